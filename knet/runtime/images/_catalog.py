"""The catalog: every image knet runs, as the real image declares it (ENTRYPOINT, CMD, the
program names it ships) and what runs for each name here (see __init__.py for the rules).

Host programs come from the machine (scripts/install.sh installs them: Debian's perl with
libmath-bigint-perl, python3, redis-server and redis-cli, curl, dig); built-ins (`@NAME`)
are modules of this package. Only names the real image ships are mapped: a `command:` with
any other word runs the host's binary of that name, as it would in an image with a shell.
"""

from __future__ import annotations

from knet.runtime.images import ARGS, Image

AGNHOST = ("@agnhost",)
NGINX = ("@nginx",)
# the guestbook's follower images: redis-server replicating the leader Service
_FOLLOWER = ('if [ "${GET_HOSTS_FROM:-dns}" = env ]; then h=${%s_SERVICE_HOST}; else h=%s; fi; '
             'exec redis-server --%s "$h" 6379 --protected-mode no')

CATALOG: tuple[Image, ...] = (
    Image(("nginx", "registry.k8s.io/nginx-slim", "registry.k8s.io/e2e-test-images/nginx"),
          "static HTTP on :80: nginx's welcome page or /usr/share/nginx/html",
          entrypoint=("/docker-entrypoint.sh",), cmd=("nginx", "-g", "daemon off;"),
          script="docker-entrypoint.sh", programs={"nginx": NGINX, "/usr/sbin/nginx": NGINX}),
    Image(("busybox", "registry.k8s.io/busybox", "registry.k8s.io/e2e-test-images/busybox"),
          "the host's sh, sleep, wget, nc, nslookup, ... (CMD sh)", cmd=("sh",)),
    Image(("alpine",), "the host's sh, sleep, wget, ... (CMD /bin/sh)", cmd=("/bin/sh",)),
    Image(("ubuntu", "debian", "registry.k8s.io/e2e-test-images/jessie-dnsutils",
           "registry.k8s.io/e2e-test-images/dnsutils"),
          "the host's bash, coreutils, dig, nslookup, curl (CMD bash)", cmd=("bash",)),
    Image(("curlimages/curl",), "the host's curl (args starting with a flag or a URL go to curl)",
          entrypoint=("/entrypoint.sh",), cmd=("curl",), script="entrypoint.sh"),
    Image(("hashicorp/http-echo",), "HTTP echo of -text on -listen (default :5678)",
          entrypoint=("/http-echo",),
          programs={"/http-echo": ("@http_echo",), "http-echo": ("@http_echo",)}),
    Image(("registry.k8s.io/e2e-test-images/agnhost",),
          "agnhost: netexec, serve-hostname, liveness, connect, porter, pause, test-webserver, "
          "dns-suffix, dns-server-list, etc-hosts",
          entrypoint=("/agnhost",), cmd=("pause",),
          programs={"/agnhost": AGNHOST, "agnhost": AGNHOST}),
    Image(("registry.k8s.io/liveness",), "/server: /healthz 200 for 10 s, then 500",
          cmd=("/server",), programs={"/server": (*AGNHOST, "liveness")}),
    Image(("registry.k8s.io/serve_hostname",), "its hostname over HTTP on :9376",
          entrypoint=("/serve_hostname",),
          programs={"/serve_hostname": (*AGNHOST, "serve-hostname")}),
    Image(("registry.k8s.io/goproxy",), "an HTTP proxy on :8080 (the tcpSocket probe example)",
          entrypoint=("/goproxy",), programs={"/goproxy": ("@goproxy",)}),
    Image(("registry.k8s.io/echoserver",),
          "HTTP on :8080 answering what it received (client address, request, headers)",
          entrypoint=("/usr/local/bin/run.sh",),
          programs={"/usr/local/bin/run.sh": ("@echoserver",)}),
    Image(("registry.k8s.io/hpa-example",),
          "php-apache on :80: burns CPU on each request, answers OK!",
          entrypoint=("docker-php-entrypoint",), cmd=("apache2-foreground",),
          script="docker-php-entrypoint",
          programs={"apache2-foreground": ("@hpa_example",)}),
    Image(("registry.k8s.io/pause",), "sleeps until SIGTERM", entrypoint=("/pause",),
          programs={"/pause": ("@pause",), "pause": ("@pause",)}),
    Image(("knet/whoami", "traefik/whoami", "containous/whoami"),
          "HTTP on :80: pod name, pod IP, node, client address, headers (JSON at /api)",
          entrypoint=("/whoami",), programs={"/whoami": ("@whoami",), "whoami": ("@whoami",)}),
    Image(("knet/dns", "knet/coredns", "registry.k8s.io/coredns/coredns", "coredns/coredns"),
          "knet's cluster DNS (python -m knet.dns)", entrypoint=("/coredns",),
          programs={"/coredns": ("@@knet.dns",)}),
    Image(("perl",), "the host's perl, with Math::BigInt (CMD perl -de0)", cmd=("perl", "-de0")),
    Image(("python",), "the host's python3, also as `python` (CMD python3)", cmd=("python3",),
          programs={"python": ("python3",)}),
    Image(("redis", "registry.k8s.io/redis"),
          "Debian's redis-server and redis-cli (protected mode off, as in the image)",
          entrypoint=("docker-entrypoint.sh",), cmd=("redis-server",),
          script="docker-entrypoint.sh",
          programs={"redis-server": ("redis-server", ARGS, "--protected-mode", "no")}),
    Image(("us-docker.pkg.dev/google-samples/containers/gke/gb-frontend",
           "gcr.io/google-samples/gb-frontend"),
          "the guestbook's frontend on :80: guestbook.php over redis-leader and redis-follower",
          entrypoint=("docker-php-entrypoint",), cmd=("apache2-foreground",),
          script="docker-php-entrypoint",
          programs={"apache2-foreground": ("@guestbook",)}),
    Image(("us-docker.pkg.dev/google-samples/containers/gke/gb-redis-follower",
           "gcr.io/google-samples/gb-redis-follower"),
          "the guestbook's redis follower: redis-server replicating redis-leader",
          cmd=("/run.sh",), programs={"/run.sh": (
              "sh", "-c", _FOLLOWER % ("REDIS_LEADER", "redis-leader", "replicaof"))}),
    Image(("gcr.io/google_samples/gb-redisslave", "gcr.io/google-samples/gb-redisslave"),
          "the old guestbook's redis slave: redis-server replicating redis-master",
          cmd=("/run.sh",), programs={"/run.sh": (
              "sh", "-c", _FOLLOWER % ("REDIS_MASTER", "redis-master", "slaveof"))}),
)
