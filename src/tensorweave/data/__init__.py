"""Data: loaders for the packaged corpora (shared/DATA.md) and input pipelines."""

from tensorweave.data.dataset import (  # noqa: F401,E501
    Dataset,
    Iterator,
    TextLineDataset,
    experimental,
    make_initializable_iterator,
    make_one_shot_iterator,
)
from tensorweave.data.datasets import (  # noqa: F401
    FASHION_MNIST_CLASSES,
    DatasetNotFoundError,
    load_de_en_pairs,
    load_fashion_mnist,
    load_mnist_5k,
    load_reply_pairs,
)
