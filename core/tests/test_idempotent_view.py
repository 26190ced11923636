"""`@idempotent` on any view's POST: runs once per key, replays, refuses another body, frees a failed key."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from core.idempotency import idempotent
from core.models import IdempotencyKey

pytestmark = pytest.mark.django_db


class NoteCreateApi(APIView):
    """A POST endpoint that counts the notes it was asked to create."""

    created: list[Any] = []  # each test passes its own list to as_view()

    class InputSerializer(serializers.Serializer):
        text = serializers.CharField()

    @idempotent
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self.created.append(serializer.validated_data["text"])
        return Response({"number": len(self.created), **serializer.validated_data}, status=status.HTTP_201_CREATED)


@pytest.fixture
def post(customer):
    created: list[Any] = []
    view = NoteCreateApi.as_view(created=created)

    def send(body: dict, key: str | None = "key-1") -> Response:
        headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
        request = APIRequestFactory().post("/notes/", body, format="json", **headers)
        force_authenticate(request, user=customer)
        return view(request)

    send.created = created
    return send


def test_without_a_key_every_request_runs(post):
    assert post({"text": "a"}, key=None).data["number"] == 1
    assert post({"text": "a"}, key=None).data["number"] == 2
    assert not IdempotencyKey.objects.exists()


def test_the_same_key_and_body_replay_the_first_response(post):
    first = post({"text": "a"})
    again = post({"text": "a"})
    assert first.status_code == again.status_code == 201
    assert again.data == first.data == {"number": 1, "text": "a"}
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert post.created == ["a"]


def test_the_same_key_with_another_body_is_a_422(post):
    post({"text": "a"})
    response = post({"text": "b"})
    assert response.status_code == 422
    assert response.data["code"] == "unprocessable"
    assert post.created == ["a"]


def test_a_refused_request_frees_its_key(post):
    assert post({"text": ""}).status_code == 400
    assert not IdempotencyKey.objects.exists()
    assert post({"text": "a"}).status_code == 201
