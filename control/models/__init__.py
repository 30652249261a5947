"""API object schemas (pydantic v2, Kubernetes field names on the wire), defaulting and
validation, and the resource table (`resources`)."""
