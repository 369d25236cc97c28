"""`jobsub ui`: a live, read-only web view of the profile's jobs, served from the object store alone."""
