"""Talking to RabbitMQ: bounded broker calls, checks, publishing, reply queues, queue operations."""
