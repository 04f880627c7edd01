"""The SUPERB benchmark: task registry, cells (upstream x feature x task), sweep planning, the cell
runner (s3prl's own runner in a child process), results rows, the report, and the s3prl bridge behind
`run_downstream.py`."""
