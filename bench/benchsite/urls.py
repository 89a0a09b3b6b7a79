from django.urls import path

from benchsite import views

urlpatterns = [
    path("ping/", views.ping),
    path("page/", views.page),
    path("enqueue/", views.enqueue_mark),
]
