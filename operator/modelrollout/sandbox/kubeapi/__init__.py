"""A Kubernetes API server emulator built on kmock, for the sandbox and the tests.

It keeps objects in memory with kube-apiserver's semantics: uid, one global resourceVersion,
generation, 201/409/422, the status subresource, label and field selectors, watches from a
resourceVersion with timeouts and 410, CRD registration into discovery and OpenAPI, schema
validation, pruning, defaults and CEL rules, finalizers, owner-reference garbage collection and
server-side tables, so kubectl, kopf and the Python clients work against it unmodified.

``modelrollout sandbox kube-api`` runs it as a process (:mod:`.command`);
:class:`.app.KubeApi` runs it in-process; :mod:`.testing` starts the process for tests.
Nothing is imported here, so the CLI works without the sandbox extra installed.
"""
