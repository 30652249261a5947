"""Request attributes of the stream and proxy subresources, as kube-apiserver 1.32 reads them:
the subresource is the one segment after the name (services/NAME/proxy/a/b is services/proxy),
and a WebSocket GET of pods/exec, attach or portforward is authorized as create."""

from __future__ import annotations

from control.auth.requestinfo import attributes
from control.auth.types import UserInfo

U = UserInfo("jane")
NS = "/api/v1/namespaces/default"


def test_proxy_paths_name_the_proxy_subresource() -> None:
    a = attributes(U, "GET", f"{NS}/services/web:http/proxy/a/b", {})
    assert (a.resource, a.subresource, a.name, a.verb) == ("services", "proxy", "web:http", "get")
    a = attributes(U, "POST", "/api/v1/nodes/node-1/proxy/flows", {})
    assert (a.resource, a.subresource, a.verb) == ("nodes", "proxy", "create")


def test_stream_gets_are_creates() -> None:
    for sub in ("exec", "attach", "portforward"):
        assert attributes(U, "GET", f"{NS}/pods/p/{sub}", {"command": "sh"}).verb == "create"
        assert attributes(U, "POST", f"{NS}/pods/p/{sub}", {}).verb == "create"
    assert attributes(U, "GET", f"{NS}/pods/p/log", {}).verb == "get"
    assert attributes(U, "GET", f"{NS}/pods/p/proxy/x", {}).verb == "get"


def test_forbidden_messages_name_the_group_resource() -> None:
    from control.auth.requestinfo import forbidden_message
    a = attributes(U, "GET", "/api/v1/namespaces/default/pods/client/exec", {})
    assert forbidden_message(a) == (
        'pods "client" is forbidden: User "jane" cannot create resource "pods/exec" in API '
        'group "" in the namespace "default"')
    a = attributes(U, "GET", "/apis/apps/v1/namespaces/default/deployments/web", {})
    assert forbidden_message(a).startswith('deployments.apps "web" is forbidden: User "jane" '
                                           'cannot get resource "deployments" in API group '
                                           '"apps"')
