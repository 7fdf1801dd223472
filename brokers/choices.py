"""Status values, scopes and constants of the brokerage, defined once."""

from django.db import models


class Scope(models.TextChoices):
    """Broker API key scopes: the seed's table, one per endpoint."""

    SUB_BROKERS_CREATE = "sub-brokers:create"
    SUB_BROKERS_LIST = "sub-brokers:list"
    SUB_BROKERS_UPGRADE = "sub-brokers:upgrade"
    BALANCE_READ = "balance:read"
    CLIENTS_LIST = "clients:list"
    CLIENTS_CREATE = "clients:create"
    CLIENTS_BALANCE = "clients:balance"
    CLIENTS_ORDERS = "clients:orders"
    CLIENTS_POSITIONS = "clients:positions"
    CLIENTS_WITHDRAWALS = "clients:withdrawals"
    TRANSFER_DEPOSIT = "transfer:deposit"
    TRANSFER_WITHDRAW = "transfer:withdraw"
    TRANSFER_HISTORY = "transfer:history"
    WITHDRAWAL_READ = "withdrawal:read"
    WITHDRAWAL_LIST = "withdrawal:list"
    WITHDRAWAL_LOCK = "withdrawal:lock"
    WITHDRAWAL_UNLOCK = "withdrawal:unlock"


ALL_SCOPES: tuple[str, ...] = tuple(Scope.values)


class WithdrawalStatus(models.TextChoices):
    """The seed's withdrawal states, plus ``cancelled`` (the user cancelled during the cooling period)."""

    PENDING = "pending"  # cooling period: a broker may lock, the user may cancel
    BROKER_LOCKED = "broker_locked"  # an OTC broker pays the user; chain monitoring active
    BROKER_COMPLETED = "broker_completed"  # chain confirmed, DCT settled to the broker (final)
    PROCESSING = "processing"  # cooling period over: the platform pays
    COMPLETED = "completed"  # platform payout done (final)
    CANCELLED = "cancelled"  # cancelled by the user while pending (final)


#: States whose hold is still open (the client's funds are set aside).
OPEN_WITHDRAWAL_STATUSES = (WithdrawalStatus.PENDING, WithdrawalStatus.BROKER_LOCKED, WithdrawalStatus.PROCESSING)
FINAL_WITHDRAWAL_STATUSES = (
    WithdrawalStatus.BROKER_COMPLETED,
    WithdrawalStatus.COMPLETED,
    WithdrawalStatus.CANCELLED,
)


class TransferKind(models.TextChoices):
    """Every money movement of the brokerage (each is one ledger transaction)."""

    FUNDING = "funding"  # the platform credits a broker (from the outside world)
    DEPOSIT = "deposit"  # broker -> client (POST /clients/{id}/deposit)
    OTC_SETTLEMENT = "otc_settlement"  # client's held funds -> the broker who paid the user on chain
    PAYOUT = "payout"  # client's held funds -> the outside world (the platform paid the user)


#: Ledger owner type of a broker's own account (``exchanges.ledger.choices.OwnerType.BROKER``).
OWNER_BROKER = "broker"
OWNER_TRADER = "trader"
