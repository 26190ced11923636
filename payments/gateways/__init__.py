"""Payment gateways: the interface providers plug in behind (`base`) and the simulated one (`simulated`).

`settings.PAYMENT_GATEWAY` names the gateway class by dotted path (by default
`payments.gateways.SimulatedGateway`); `get_gateway()` builds it.
"""

from payments.gateways.base import (
    GatewayError,
    GatewayResult,
    GatewayStatus,
    GatewayTimeout,
    PaymentGateway,
    get_gateway,
)
from payments.gateways.simulated import SimulatedGateway

__all__ = [
    "GatewayError",
    "GatewayResult",
    "GatewayStatus",
    "GatewayTimeout",
    "PaymentGateway",
    "SimulatedGateway",
    "get_gateway",
]
