from django.urls import path

from apps.accounts.views import AccountLoginView, AccountLogoutView, account_view, key_rotate_view

urlpatterns = [
    path("", account_view, name="account"),
    path("login/", AccountLoginView.as_view(), name="account-login"),
    path("logout/", AccountLogoutView.as_view(), name="account-logout"),
    path("keys/<uuid:key_id>/rotate", key_rotate_view, name="account-key-rotate"),
]
