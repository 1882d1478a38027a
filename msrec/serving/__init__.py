"""Serving: a TF-Serving-compatible gRPC server (``msrec serve``) and its client (``msrec query``).

server.py (gRPC servicers, start-up), flags.py (``msrec serve``'s flags), limits.py (what one
request may cost), model_manager.py (version lifecycle), servable.py (one loaded version),
tensors.py (TensorProto <-> numpy, request checks), errors.py (status codes, user strings cut in
messages), config.py (models.config), client.py (Python client on the official stubs), candidates.py
(requests assembled from the logs), toy_model.py (a small model with the serving contract),
tfs_protos.py (TF Serving config messages the serving-api wheel lacks, for checking deploy/).
"""
