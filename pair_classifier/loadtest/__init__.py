"""The serving load test: the same pairs, one per request, sent by locust to each server."""
