"""``python -m api_gateway``."""

from api_gateway.app import SERVICE_NAME, GatewaySettings, create_app
from servicekit.app import serve

if __name__ == "__main__":
    settings = GatewaySettings()
    serve(SERVICE_NAME, lambda: create_app(settings), settings)
