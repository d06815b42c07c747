"""The REST API at ``/api/`` (docs/api.md): the tutorial's ``articles``, ``authors`` and ``entries``
through Django REST Framework, an OpenAPI 3 schema by drf-spectacular. An interface: reads are
querysets of the models, writes go through the services inside the retrying atomic helper."""
