"""api-gateway: the public order API, orchestrating inventory, order and notification."""
