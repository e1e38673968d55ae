"""Marshmallow schemas of auth_svc: request bodies, responses and event payloads."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from common.core.formats import USERNAME_PATTERN, FullMatch, PartialUpdate
from common.core.paging import OffsetPageQuery

ROLES = ("user", "admin", "superadmin")

Username = fields.Str(
    required=True,
    validate=[
        validate.Length(3, 50),
        FullMatch(USERNAME_PATTERN, error="may contain only letters, digits, '_', '.' and '-'"),
    ],
)
Password = fields.Str(required=True, validate=validate.Length(8, 128), load_only=True)


class RegisterRequest(Schema):
    username = Username
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = Password


class LoginRequest(Schema):
    username = fields.Str(required=True, validate=validate.Length(1, 254))
    password = fields.Str(required=True, validate=validate.Length(1, 128), load_only=True)


class RefreshRequest(Schema):
    refresh_token = fields.Str(required=True, validate=validate.Length(1, 4096))


class UpdateMeRequest(PartialUpdate):
    email = fields.Email(validate=validate.Length(max=254))
    full_name = fields.Str(validate=validate.Length(max=100))


class ChangePasswordRequest(Schema):
    current_password = fields.Str(required=True, validate=validate.Length(1, 128), load_only=True)
    new_password = Password


class ChangeRoleRequest(Schema):
    role = fields.Str(required=True, validate=validate.OneOf(ROLES))


class UserListQuery(OffsetPageQuery):
    search = fields.Str(load_default=None, validate=validate.Length(max=50))


class UserSchema(Schema):
    """A user as the API and the newUser/updateUser events show it: never a password hash."""

    id = fields.Str()
    username = fields.Str()
    email = fields.Str()
    full_name = fields.Str()
    role = fields.Str()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class UserEventSchema(UserSchema):
    version = fields.Int()


class TokenPairSchema(Schema):
    access_token = fields.Str()
    refresh_token = fields.Str()
    token_type = fields.Str()
    expires_in = fields.Int()


class RegisterResponse(TokenPairSchema):
    user = fields.Nested(UserSchema)


class JwkSchema(Schema):
    kty = fields.Str(metadata={"example": "OKP"})
    crv = fields.Str(metadata={"example": "Ed25519"})
    x = fields.Str(metadata={"description": "the public key, base64url"})
    alg = fields.Str(metadata={"example": "EdDSA"})
    use = fields.Str(metadata={"example": "sig"})
    kid = fields.Str()


class JwksSchema(Schema):
    """GET /auth/jwks.json (RFC 7517)."""

    keys = fields.List(fields.Nested(JwkSchema))
