"""Web endpoints that publishers' hubs call: the WebSub callback, ``/websub/<callback id>``.

Thin: a GET is the hub's verification of intent (or its denial), a POST a content distribution;
``ingest.services.websub`` decides both. The callback id is opaque and unguessable (it is the
subscription's own), the body is read up to INGEST_MAX_BYTES and one byte (more is refused
unread), and CSRF does not apply: a hub has no session, the HMAC signature is the check.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse, HttpResponseNotAllowed
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from ingest.services import websub


@csrf_exempt
@never_cache
def websub_callback(request, callback_id: str):
    if request.method == "GET":
        answer = websub.intent_verify(callback_id=callback_id, params=request.GET)
    elif request.method == "POST":
        body = request.read(settings.INGEST_MAX_BYTES + 1)
        answer = websub.content_receive(callback_id=callback_id, body=body,
                                        content_type=request.headers.get("Content-Type", ""),
                                        signature=request.headers.get("X-Hub-Signature", ""))
    else:
        return HttpResponseNotAllowed(["GET", "POST"])
    response = HttpResponse(answer.body, status=answer.status, content_type="text/plain; charset=utf-8")
    if answer.status == 503:
        response["Retry-After"] = "60"
    return response
