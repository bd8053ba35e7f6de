"""Routes that exist only in tests, to make the API fail in the ways real endpoints can."""

from django.urls import include, path
from rest_framework.exceptions import Throttled
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView


class CrashView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    def get(self, request):
        raise RuntimeError("a bug with a secret inside: Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln")


class ThrottledView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    def get(self, request):
        raise Throttled(wait=41.2)


class AbsoluteUrlView(APIView):
    """Builds an absolute URL, as the photo views do: that reads the Host header."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    def get(self, request):
        return Response({"url": request.build_absolute_uri("/somewhere")})


class EchoView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    def post(self, request):
        return Response({"keys": sorted(request.data)})


urlpatterns = [
    path("api/v1/test/crash", CrashView.as_view()),
    path("api/v1/test/throttled", ThrottledView.as_view()),
    path("api/v1/test/echo", EchoView.as_view()),
    path("api/v1/test/absolute", AbsoluteUrlView.as_view()),
    path("", include("homepocket.urls")),
]

handler404 = "homepocket.api.django_handlers.handler404"
handler500 = "homepocket.api.django_handlers.handler500"
