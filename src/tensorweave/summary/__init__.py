"""``tw.summary``: TensorBoard summaries as graph ops, and the event-file writer.

Example::

    tw.summary.scalar("loss", loss)
    tw.summary.histogram("weights", w)
    merged = tw.summary.merge_all()
    writer = tw.summary.FileWriter("/tmp/logs/run1", sess.graph)
    writer.add_summary(sess.run(merged, feed), step)

Imported on first use of ``tw.summary`` (it loads protobuf and TensorBoard's writer).
"""

from tensorboard.compat.proto.event_pb2 import Event, SessionLog  # noqa: F401
from tensorboard.compat.proto.summary_pb2 import (  # noqa: F401
    HistogramProto,
    Summary,
    SummaryDescription,
    SummaryMetadata,
)

from tensorweave.summary.summary_ops import (  # noqa: F401
    histogram,
    image,
    merge,
    merge_all,
    scalar,
    tensor_summary,
    text,
)
from tensorweave.summary.writer import FileWriter, FileWriterCache  # noqa: F401

__all__ = ["scalar", "histogram", "image", "text", "tensor_summary", "merge", "merge_all",
           "FileWriter", "FileWriterCache", "Summary", "SummaryMetadata", "HistogramProto",
           "Event", "SessionLog", "SummaryDescription"]
