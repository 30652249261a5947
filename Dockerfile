# The knet lab container: knet, a real kubectl and the tools people reach for (curl, dig, ping,
# nc, tcpdump, iproute2), in a privileged container whose own network namespace is the host of
# the emulated cluster.
#   docker build -t knet .
#   docker run --rm -it --privileged knet              # usage, then a shell
#   docker run --rm -it --privileged knet knet demo    # the demo
# knet is installed by scripts/install.sh, the very script the README's install step runs, so
# the two cannot drift; it adds python3 and pip itself when the base has none.
ARG BASE=python:3.12-slim
FROM ${BASE}

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY . /opt/knet
RUN bash /opt/knet/scripts/install.sh \
    && bash /opt/knet/scripts/container-kubectl.sh \
    && if [ -x /usr/local/bin/kubectl ] && dpkg -s kubernetes-client >/dev/null 2>&1; then \
           apt-get purge -y -qq kubernetes-client >/dev/null; fi \
    && apt-get install -y -qq --no-install-recommends less >/dev/null \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && knet --version

WORKDIR /opt/knet
ENTRYPOINT ["/opt/knet/scripts/container-entrypoint.sh"]
CMD []
