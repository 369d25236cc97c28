"""The built-in job templates (YAML). Installed as the package ``jobsub.job_templates`` (see pyproject.toml)."""
