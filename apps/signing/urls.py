from django.urls import path

from apps.signing.api import SigningKeyCreateView, SignView

urlpatterns = [
    path("signing/keys", SigningKeyCreateView.as_view(), name="signing-keys"),
    path("signing/sign", SignView.as_view(), name="signing-sign"),
]
