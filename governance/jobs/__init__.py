"""Background work: the job worker and the webhook deliverer."""
