"""notification-service: accepts a notification and sends it after answering."""
