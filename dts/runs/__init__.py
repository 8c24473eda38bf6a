"""Running work: a dispatch round, a load, a status query, the autoscaler, and what users watch."""
