"""inventory-service: stock levels and all-or-nothing reservations."""
