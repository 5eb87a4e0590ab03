from tests.delivery.conftest import fx_delivery  # noqa: F401 - the delivery fixtures serve metering too
