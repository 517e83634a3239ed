"""``python -m inventory_service``."""

from inventory_service.app import SERVICE_NAME, InventorySettings, create_app
from servicekit.app import serve

if __name__ == "__main__":
    settings = InventorySettings()
    serve(SERVICE_NAME, lambda: create_app(settings), settings)
