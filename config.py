"""The checkout's settings file, beside wsgi.py.

`dispatcher run`, every `dispatcher` command and `gunicorn wsgi:app` read it when the
package runs from this checkout (`pip install -e .`, where the instance folder is
./instance) and neither DISPATCHER_SETTINGS nor MIDDLEWARE_SETTINGS names another file.
The wheel does not install it: an installed dispatcher reads the file DISPATCHER_SETTINGS
names, and a copy of this one is a start.

Upper-case names become settings, over the package's defaults (dispatcher/config.py) and
under the environment's variables. Every setting: docs/configuration.md. No secret
belongs here: a cloud's key and secret come from the environment variables its USER_ENV
and PASSWORD_ENV name; the secret key and the password salt from the instance folder, or
from DISPATCHER_SECRET_KEY and DISPATCHER_PASSWORD_SALT.
"""

# The clouds, in the original's CLOUD_FARM shape; `default` answers the URLs that name no
# cloud. Two on libcloud's Dummy driver, as the package's defaults have them: the README's
# quick start uses them.
CLOUD_FARM = {
    "default": {"ENGINE": "dummy"},
    "fake_driver": {"ENGINE": "dummy"},
    # An OpenStack cloud (Keystone v3), its password in the environment variable OS_PASSWORD:
    # "openstack": {
    #     "ENGINE": "openstack",
    #     "USER": "demo",
    #     "PASSWORD_ENV": "OS_PASSWORD",
    #     "EXTRA_PARAMS": {
    #         "ex_force_auth_url": "https://keystone.example.org:5000",
    #         "ex_force_auth_version": "3.x_password",
    #         "ex_tenant_name": "demo",
    #         "ex_domain_name": "Default",
    #     },
    # },
    # An EC2 region, its keys in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY:
    # "aws": {
    #     "ENGINE": "ec2",
    #     "USER_ENV": "AWS_ACCESS_KEY_ID",
    #     "PASSWORD_ENV": "AWS_SECRET_ACCESS_KEY",
    #     "EXTRA_PARAMS": {"region": "eu-west-1"},
    # },
}

# A warm pool: VMs of vm_type "web" kept started on the Dummy cloud `default`, which an
# assign of {"vm_type": "web", "user": ...} without a node takes at once. With POOLS set,
# `dispatcher run` runs the pool manager in a thread (docs/configuration.md, "Warm pools").
# POOLS = {
#     "web": {
#         "clouds": [{"cloud": "default", "image": "1", "size": "1"}],
#         "min_ready": 2,
#         "max_total": 4,
#         "release": "reuse",  # the Dummy driver reuses ids after a destroy
#     },
# }
# POOLS_INTERVAL = 15  # seconds between two passes of the pool manager

# Leases: how long an assignment lasts when the assign asks for no "lease", and the longest
# one may be (docs/configuration.md, "Leases"). Unset, assignments never end.
# DEFAULT_LEASE = 8 * 3600  # a working day
# MAX_LEASE = 7 * 24 * 3600  # a week, then an extend
