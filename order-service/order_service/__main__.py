"""``python -m order_service``."""

from order_service.app import SERVICE_NAME, OrderSettings, create_app
from servicekit.app import serve

if __name__ == "__main__":
    settings = OrderSettings()
    serve(SERVICE_NAME, lambda: create_app(settings), settings)
