"""``python -m notification_service``."""

from notification_service.app import SERVICE_NAME, NotificationSettings, create_app
from servicekit.app import serve

if __name__ == "__main__":
    settings = NotificationSettings()
    serve(SERVICE_NAME, lambda: create_app(settings), settings)
