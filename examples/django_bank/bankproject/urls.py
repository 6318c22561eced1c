"""URLs of the example bank: none. The example is about its tables, which banktasks reads."""

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
