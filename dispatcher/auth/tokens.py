"""Tokens read only in the form they were issued in.

Flask-Security-Too signs tokens with itsdangerous, whose base64 decoding forgives
padding (``=``) and the unused low bits of a last character: several texts decode to
one signed token. The dispatcher accepts only the text it issued.
"""

import re

from itsdangerous import BadData, BadSignature
from itsdangerous.encoding import base64_decode, base64_encode

# Text shaped as a token (``issued_form``'s parts): the payload, the time of signing and
# the signature in URL-safe base64, joined by dots, a leading dot when the payload is
# compressed. Loose enough to catch a token glued to other text (a header's name), for
# hiding tokens in a log, never for checking one: the payload is at least a JSON object's
# worth, the time 4 to 12 characters (6 until 2106), the signature at least SHA-1's 27.
SHAPE = re.compile(r"\.?[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{4,12}\.[A-Za-z0-9_-]{20,}")


def issued_form(token) -> bool:
    """Whether ``token`` is written exactly as a serializer writes one.

    Base64 decoding forgives padding (``=``) and the unused low bits of a last
    character, so that several texts decode to one signed token: only the one the
    dispatcher issued is accepted.
    """
    if not isinstance(token, str):
        return False
    parts = token.removeprefix(".").split(".")  # a leading dot marks a compressed payload
    try:
        return all(base64_encode(base64_decode(part)).decode() == part for part in parts)
    except BadData:
        return False


class AsIssuedTokenSerializer:
    """Flask-Security-Too's token serializer, reading only tokens in their issued form."""

    def __init__(self, serializer):
        self._serializer = serializer

    def __getattr__(self, name):
        return getattr(self._serializer, name)

    def dumps(self, *args, **kwargs):
        return self._serializer.dumps(*args, **kwargs)

    def loads(self, token, *args, **kwargs):
        """The token's data.

        :raises BadSignature: the token is not in the form it was issued in.
        """
        if not issued_form(token):
            raise BadSignature("token not in the form it was issued in")
        return self._serializer.loads(token, *args, **kwargs)
