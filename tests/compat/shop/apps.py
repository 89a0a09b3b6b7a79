from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "tests.compat.shop"
    label = "compat_shop"
