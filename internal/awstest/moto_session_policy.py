"""Run moto's server with AWS's session-policy rule for assumed roles.

moto (5.2.1, as read and tested) checks a request made with assumed-role
credentials against the role's identity policies only: AssumedRoleAccessKey.collect_policies
ignores the session policy AssumeRole received, which moto keeps in
moto.sts.models.AssumedRole.policy. AWS allows such a request only when
the role's policies and the session policy both allow it (the effective
permissions are their intersection):
https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies.html#policies_session

This launcher adds that one rule to moto's access check, then runs
moto_server unchanged:

    python3 moto_session_policy.py -H 127.0.0.1 -p PORT

moto evaluates policies only once authentication is on: start it with
INITIAL_NO_AUTH_ACTION_COUNT unset (or inf), set up users, roles and
buckets, then POST 0 to /moto-api/reset-auth.
"""

import sys

from moto.iam import access_control
from moto.server import main
from moto.sts.models import sts_backends
from moto.utilities.utils import get_partition

_identity_check = access_control.IAMRequestBase.check_action_permitted


def _session_policy(request):
    """The session policy of the assumed-role session that signed request."""
    key = request._access_key
    if not isinstance(key, access_control.AssumedRoleAccessKey):
        return None
    backend = sts_backends[key.account_id][get_partition(request._region)]
    for role in backend.assumed_roles:
        if role.access_key_id == key._access_key_id:
            return role.policy
    return None


def check_action_permitted(self, resource):
    _identity_check(self, resource)  # raises AccessDenied itself
    if self._action == "sts:GetCallerIdentity":
        return  # AWS answers it whatever the policies say
    policy = _session_policy(self)
    if not policy:
        return
    result = access_control.IAMPolicy(policy).is_action_permitted(
        self._action,
        resource,
        incoming_condition_values={"aws:RequestedRegion": self._region},
    )
    if result != access_control.PermissionResult.PERMITTED:
        self._raise_access_denied()


access_control.IAMRequestBase.check_action_permitted = check_action_permitted

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
