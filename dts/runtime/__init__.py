"""What runs inside a worker: the tasks' work, their retries and backoff, dead letters."""
