"""`pair-classifier demo`: a Gradio page that scores one pair on the served model (Triton) or,
when no server runs, on the export folder's served graph, with the model's version and lineage."""
