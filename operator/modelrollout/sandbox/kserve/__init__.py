"""A local KServe control plane: InferenceService revisions, traffic and status, no cluster.

``revisions`` is KServe's revision and traffic semantics as pure functions, ``runtime`` the
port that runs a model server per revision, and ``controller`` the watch loop that writes
the status KServe would write (``python -m modelrollout.sandbox.kserve --kubeconfig FILE``).
"""
