"""Every Lode operation the client calls, by the OpenAPI ``operationId``: its method and path.

A test holds this table against Lode's committed ``openapi/openapi.json`` (method, path and the
response fields the models read), so the client and the server cannot drift apart unnoticed.
"""

from __future__ import annotations

OPERATIONS: dict[str, tuple[str, str]] = {
    "GetMe": ("GET", "/v1/me"),
    "ListProducts": ("GET", "/v1/products"),
    "GetProduct": ("GET", "/v1/products/{key}"),
    "CreateProduct": ("POST", "/v1/products"),
    "SubmitProduct": ("POST", "/v1/products/{product_id}/submit"),
    "GetTerms": ("GET", "/v1/products/{product_id}/terms"),
    "CheckEligibility": ("GET", "/v1/products/{product_id}/eligibility"),
    "ListReleases": ("GET", "/v1/products/{product_id}/releases"),
    "CreateRelease": ("POST", "/v1/products/{product_id}/releases"),
    "GetRelease": ("GET", "/v1/products/{product_id}/releases/{version}"),
    "UploadReleaseFile": ("PUT", "/v1/products/{product_id}/releases/{version}/files/{name}"),
    "PublishRelease": ("POST", "/v1/products/{product_id}/releases/{version}/publish"),
    "ListApplications": ("GET", "/v1/applications"),
    "CreateApplication": ("POST", "/v1/applications"),
    "GetApplication": ("GET", "/v1/applications/{app_id}"),
    "SubmitApplication": ("POST", "/v1/applications/{app_id}/submit"),
    "WithdrawApplication": ("POST", "/v1/applications/{app_id}/withdraw"),
    "DecideTrack": ("POST", "/v1/applications/{app_id}/tracks/{track}/decision"),
    "ListLicences": ("GET", "/v1/licences"),
    "GetLicence": ("GET", "/v1/licences/{licence_id}"),
    "AcceptLicence": ("POST", "/v1/licences/{licence_id}/accept"),
    "CheckoutLicence": ("POST", "/v1/licences/{licence_id}/checkout"),
    "QueryLicence": ("POST", "/v1/licences/{licence_id}/query"),
    "ListLicenceFiles": ("GET", "/v1/licences/{licence_id}/files"),
    "DownloadLicenceFile": ("GET", "/v1/licences/{licence_id}/files/{name}"),
    "GetEpsilonBudget": ("GET", "/v1/licences/{licence_id}/budget"),
    "GetLicenceUsage": ("GET", "/v1/licences/{licence_id}/usage"),
    "GetUsage": ("GET", "/v1/usage"),
    "IngestUsageEvents": ("POST", "/v1/usage-events"),
    "ListPayments": ("GET", "/v1/payments"),
    "GetPayment": ("GET", "/v1/payments/{payment_id}"),
    "GetStatement": ("GET", "/v1/orgs/{org_id}/statement"),
    "RenewLicence": ("POST", "/v1/licences/{licence_id}/renew"),
    "ListNotifications": ("GET", "/v1/notifications"),
    "MarkNotificationsRead": ("POST", "/v1/notifications/read"),
    "CreateWebhook": ("POST", "/v1/orgs/{org_id}/webhooks"),
    "ListWebhooks": ("GET", "/v1/orgs/{org_id}/webhooks"),
    "GetWebhook": ("GET", "/v1/orgs/{org_id}/webhooks/{webhook_id}"),
    "UpdateWebhook": ("PATCH", "/v1/orgs/{org_id}/webhooks/{webhook_id}"),
    "DeleteWebhook": ("DELETE", "/v1/orgs/{org_id}/webhooks/{webhook_id}"),
    "RotateWebhookSecret": ("POST", "/v1/orgs/{org_id}/webhooks/{webhook_id}/rotate-secret"),
    "ListWebhookDeliveries": ("GET", "/v1/orgs/{org_id}/webhooks/{webhook_id}/deliveries"),
    "RedeliverWebhook": ("POST", "/v1/orgs/{org_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"),
}

# The POSTs that take an Idempotency-Key: the client sends one, the same on every retry.
IDEMPOTENT = frozenset({"CreateApplication", "CheckoutLicence", "IngestUsageEvents", "RenewLicence"})
