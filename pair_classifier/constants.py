"""Names shared by stages, library and tests: file layout, environment variables, metric keys."""

from pathlib import Path

PARAMS_FILE = Path("params.yaml")
DATA_DVC_FILE = Path("data.dvc")
DVC_YAML_FILE = Path("dvc.yaml")
DVC_LOCK_FILE = Path("dvc.lock")

PREPARED_DIR = Path("artifacts/prepared")
TEACHER_DIR = Path("artifacts/teacher")
BI_ENCODER_SUBDIR = "bi_encoder"
CLASSIFIER_SUBDIR = "classifier"
CHECKPOINTS_DIR = Path("checkpoints/embed-train")
METRICS_DIR = Path("metrics")
PLOTS_DIR = Path("plots")
DVCLIVE_DIR = Path("dvclive/embed-train")

SPLITS = ("train", "val", "test")
QUARANTINE_FILE = "quarantine.jsonl"
SPLIT_SUFFIX = ".parquet"

TEXT_A = "text_a"
TEXT_B = "text_b"
LABEL = "label"  # class index
LABEL_NAME = "label_name"
SOURCE_LINE = "source_line"

ENCODER_SUBDIR = "encoder"
HEAD_FILE = "head.pt"
SAFETENSORS_FILE = "model.safetensors"
BI_ENCODER_CONFIG = "bi_encoder.json"
CLASSIFIER_FILE = "svm.joblib"
CLASSIFIER_CONFIG = "classifier.json"

LAST_CHECKPOINT = "last"
BEST_CHECKPOINT = "best"
CHECKPOINT_STATE = "state.json"

ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
DOWNLOAD_TIMEOUT_S = 60  # per file of a data set's public source
MEBIBYTE = 2**20  # sizes on disk are reported in MiB
ENV_DVC_EXP_NAME = "DVC_EXP_NAME"
ENV_LOG_LEVEL = "PAIR_CLASSIFIER_LOG_LEVEL"  # DEBUG, INFO (default), WARNING, ...

DATA_METRICS = METRICS_DIR / "data.json"
TRAIN_METRICS = METRICS_DIR / "train.json"
CLASSIFIER_METRICS = METRICS_DIR / "classifier.json"
EVALUATE_METRICS = METRICS_DIR / "evaluate.json"
TRAIN_PLOTS_DIR = PLOTS_DIR / "train"
TRAIN_LOSS_PNG = TRAIN_PLOTS_DIR / "loss.png"
EVALUATE_PLOTS_DIR = PLOTS_DIR / "evaluate"

STUDENT_DIR = Path("artifacts/student")
DISTILL_CHECKPOINTS_DIR = Path("checkpoints/distill")
DISTILL_METRICS = METRICS_DIR / "distill.json"
ONNX_DIR = Path("artifacts/onnx")
QUANTIZED_DIR = Path("artifacts/quantized")
TRT_DIR = Path("artifacts/trt")
ONNX_METRICS = METRICS_DIR / "onnx.json"
QUANTIZE_METRICS = METRICS_DIR / "quantize.json"
TRT_METRICS = METRICS_DIR / "trt.json"
BENCHMARK_METRICS = METRICS_DIR / "benchmark.json"
BENCHMARK_PLOTS_DIR = PLOTS_DIR / "benchmark"
BENCHMARK_PARETO_DATA = BENCHMARK_PLOTS_DIR / "pareto.json"
BENCHMARK_PARETO_PNG = BENCHMARK_PLOTS_DIR / "pareto.png"
COVERAGE_METRICS = METRICS_DIR / "coverage.json"  # totals of the test run's line coverage
RESULTS_PAGE = Path("docs/results.md")  # generated from metrics/ and plots/ by `results`
README = Path("README.md")  # its headline block is generated too
DVCLIVE_DISTILL_DIR = Path("dvclive/distill")
CROSS_ENCODER_SUBDIR = "cross_encoder"  # its checkpoints and DVCLive logs, inside distill's
STUDENT_CHECKPOINT_SUBDIR = "student"  # beside the cross-encoder's, in distill's checkpoints
DEPLOYED_MODEL = "student"  # the model the compression chain exports, quantises and serves
TEACHER_MODEL = "teacher"
JOBLIB_ALL_CORES = -1  # joblib's n_jobs for "one worker per core"
QUOTED_VALUE_CHARS = 60  # a wrong value quoted in an error message is cut to this many characters
PROBABILITY_DECIMALS = 6  # written probabilities: finer than any threshold, short to read
REGISTER_METRICS = METRICS_DIR / "register.json"  # the registered version and its alias
SERVING_METRICS = METRICS_DIR / "serving.json"  # the load test of the servers
SERVICES_START_METRICS = METRICS_DIR / "services_start.json"  # `services up`, timed
SERVING_PLOTS_DIR = PLOTS_DIR / "serving"
