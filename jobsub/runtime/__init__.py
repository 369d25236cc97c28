"""The job runtime: what every executor starts (``python -m jobsub.runtime JOB_URI``).

It owns the job record while the job runs: stages inputs, unpacks the code, runs the command in its own
process group, ships log chunks about every second (a quiet spell's first lines at once), collects
metrics, uploads outputs periodically and at the end, and writes the final status last. Executors only
have to start it somewhere with the profile.
"""
