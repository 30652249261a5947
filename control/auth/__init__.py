"""Who is asking, and may they: authentication and authorization for the API server.

The seam (control.auth.types): an `Authenticator` turns a bearer token into a `UserInfo`; an
`Authorizer` decides on the `Attributes` of one request (user, verb, group, resource,
subresource, namespace, name, or a non-resource path). The API middleware calls both on
every request, the way kube-apiserver's filter chain does (authentication, then
impersonation, then authorization). See docs/architecture.md, "Identity and authorization".
"""
