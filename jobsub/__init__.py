"""jobsub: resumable S3-compatible transfers and ML job submission from one command line."""

__version__ = "0.1.0"
