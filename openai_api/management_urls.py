from rest_framework.routers import DefaultRouter

from .management_api import ApiKeyViewSet, RequestLogViewSet

router = DefaultRouter(trailing_slash=True)
router.register("keys", ApiKeyViewSet, basename="api-key")
router.register("request-logs", RequestLogViewSet, basename="request-log")

urlpatterns = router.urls
