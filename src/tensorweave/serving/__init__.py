"""``tensorweave.serving``: TensorFlow Serving's REST API over a SavedModel directory.

    tensorweave serve /tmp/models/mnist --model-name mnist --port 8501
    curl -d '{"instances": [[0.1, 0.2, 0.3]]}' http://127.0.0.1:8501/v1/models/mnist:predict
"""

from tensorweave.serving.server import BadRequest, Batcher, ModelServer  # noqa: F401

__all__ = ["ModelServer", "Batcher", "BadRequest"]
