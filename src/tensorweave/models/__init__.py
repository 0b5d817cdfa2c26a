"""The applications from the talk, built on tensorweave: digits, translation, Smart Reply,
image classification and captioning."""
