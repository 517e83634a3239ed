"""order-service: stores orders; owns the `process_order` span."""
