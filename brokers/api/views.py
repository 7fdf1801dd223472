"""The broker API (seed 003's endpoint table), ``/api/v1/broker/…``. Thin: parse, call, render.

Tenant boundary: every client lookup goes through ``selectors.client_for_broker`` (the caller's own
clients), every withdrawal through ``Withdrawal.objects.visible_to`` (its subtree): another broker's
id answers 404.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from brokers import selectors
from brokers.choices import Scope, TransferKind
from brokers.models import Broker, BrokerClient, Transfer
from brokers.services import brokers as broker_services
from brokers.services import clients as client_services
from brokers.services import withdrawals as withdrawal_services
from brokers.services.withdrawals import withdrawal_row
from exchanges.ledger.models import LedgerAccount

from . import exchange_reads
from .base import BrokerAPIError, BrokerAPIView

TAGS = ["broker"]
OBJ = OpenApiTypes.OBJECT


def doc(summary: str, **kwargs):
    """The OpenAPI description of a broker API operation (free-form JSON bodies; docs/api/broker.md)."""
    return extend_schema(tags=TAGS, request=OBJ, responses=OBJ, summary=summary, **kwargs)


PAGE_PARAMS = [
    OpenApiParameter("page", int, description="1-based page number"),
    OpenApiParameter("page_size", int, description="rows per page (default 100, at most 1000)"),
]


def _balance(account: LedgerAccount) -> dict[str, Any]:
    return {
        "asset": account.asset,
        "balance": account.balance,
        "held": account.held,
        "available": account.balance - account.held,
    }


def _broker_row(b: Broker) -> dict[str, Any]:
    return {
        "broker_id": str(b.pk),
        "name": b.name,
        "short": b.short,
        "role": "broker",
        "parent_broker_id": str(b.parent_id) if b.parent_id else None,
        "brand_root_id": str(b.brand_root_id) if b.brand_root_id else None,
        "tenant_code": b.tenant_code,
        "walletAddress": b.wallet_address or None,
        "created_at": b.created_at.isoformat(),
    }


def _client_row(c: BrokerClient) -> dict[str, Any]:
    return {
        "user_id": c.user_id,
        "username": c.trader.user.get_username(),
        "email": c.email,
        "wallet_address": c.wallet_address or None,
        "created_at": c.created_at.isoformat(),
    }


def _client_list_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "user_id": r["user_id"],
        "username": r["username"],
        "email": r["email"],
        "wallet_address": r["wallet_address"] or None,
        "created_at": r["created_at"].isoformat(),
        "balance": {
            "asset": r["asset"],
            "balance": r["balance"],
            "held": r["held"],
            "available": r["balance"] - r["held"],
        },
    }


def _transfer_row(t: Transfer) -> dict[str, Any]:
    return {
        "id": t.pk,
        "type": t.kind,
        "user_id": t.client.user_id if t.client_id else None,
        "asset": t.asset,
        "amount": t.amount,
        "fee": t.fee,
        "withdrawal_id": str(t.withdrawal_id) if t.withdrawal_id else None,
        "memo": t.memo,
        "created_at": t.created_at.isoformat(),
    }


# --- sub-brokers -------------------------------------------------------------------------------------------


class SubBrokersView(BrokerAPIView):
    scopes = {"GET": Scope.SUB_BROKERS_LIST, "POST": Scope.SUB_BROKERS_CREATE}

    @extend_schema(
        tags=TAGS,
        request=OBJ,
        responses=OBJ,
        summary="List all sub-brokers (the whole subtree)",
        parameters=PAGE_PARAMS,
    )
    def get(self, request):
        return Response(self.paginate(selectors.sub_brokers(broker=self.broker), "sub_brokers", _broker_row))

    @doc("Create a sub-broker (broker role) under your broker")
    def post(self, request):
        data = self.body()
        broker = broker_services.sub_broker_create(
            parent=self.broker,
            name=self.string(data, "name", required=True, max_length=128),
            username=self.string(data, "username", max_length=150),
            password=self.string(data, "password", max_length=128),
            email=self.string(data, "email", max_length=254),
            wallet_address=self.string(data, "wallet_address", max_length=64)
            or self.string(data, "walletAddress", max_length=64),
            logout_redirect_url=self.string(data, "logout_redirect_url", max_length=500),
        )
        return Response({"ok": True, **_broker_row(broker)}, status=201)


class UpgradeView(BrokerAPIView):
    scopes = {"POST": Scope.SUB_BROKERS_UPGRADE}

    @extend_schema(
        tags=TAGS, request=OBJ, responses=OBJ, summary="Upgrade a trader to broker role (keeps balance and history)"
    )
    def post(self, request, user_id: str):
        data = self.body()
        client = selectors.client_for_broker(broker=self.broker, user_id=user_id)
        password = self.string(data, "password", max_length=128)
        broker = broker_services.client_upgrade_to_broker(client=client, password=password)
        return Response(
            {
                "ok": True,
                "user_id": client.user_id,
                "username": client.trader.user.get_username(),
                "role": "broker",
                "broker_id": str(broker.pk),
                "parent_broker_id": str(broker.parent_id),
                "brand_root_id": str(broker.brand_root_id),
                "message": "User upgraded to broker. They can now log in to Broker Portal.",
                "broker_portal_url": "/admin/",
            }
        )


# --- balance and clients -----------------------------------------------------------------------------------


class BalanceView(BrokerAPIView):
    scopes = {"GET": Scope.BALANCE_READ}

    @doc("Your broker balance")
    def get(self, request):
        account = LedgerAccount.objects.get(pk=self.broker.account_id)
        return Response({"broker_id": str(self.broker.pk), **_balance(account)})


class ClientsView(BrokerAPIView):
    scopes = {"GET": Scope.CLIENTS_LIST, "POST": Scope.CLIENTS_CREATE}

    @extend_schema(
        tags=TAGS, request=OBJ, responses=OBJ, summary="List all clients with balances", parameters=PAGE_PARAMS
    )
    def get(self, request):
        page, size = self.page()
        total, rows = selectors.clients_page(broker=self.broker, page=page, size=size)
        return Response(
            {
                "clients": [_client_list_row(r) for r in rows],
                "total": total,
                "page": page,
                "page_size": size,
                "total_pages": -(-total // size),
            }
        )

    @extend_schema(
        tags=TAGS, request=OBJ, responses=OBJ, summary="Create a trader account (409 on a duplicate user_id)"
    )
    def post(self, request):
        data = self.body()
        client = client_services.client_create(
            broker=self.broker,
            user_id=data.get("user_id"),
            email=self.string(data, "email", max_length=254),
            password=self.string(data, "password", max_length=128) or None,
            wallet_address=self.string(data, "wallet_address", max_length=64),
        )
        return Response({"ok": True, **_client_row(client)}, status=201)


class ClientBalanceView(BrokerAPIView):
    scopes = {"GET": Scope.CLIENTS_BALANCE}

    @doc("A client's balance")
    def get(self, request, user_id: str):
        client = selectors.client_for_broker(broker=self.broker, user_id=user_id)
        return Response({"user_id": client.user_id, **_balance(client.account)})


class ClientOrdersView(BrokerAPIView):
    scopes = {"GET": Scope.CLIENTS_ORDERS}

    @extend_schema(
        tags=TAGS,
        request=OBJ,
        responses=OBJ,
        summary="A client's trade history (orders on the house exchange)",
        parameters=PAGE_PARAMS,
    )
    def get(self, request, user_id: str):
        client = selectors.client_for_broker(broker=self.broker, user_id=user_id)
        page, size = self.page()
        body = {"user_id": client.user_id, **exchange_reads.orders(client.trader, page=page, size=size)}
        body["trades"] = exchange_reads.trades(client.trader)
        return Response(body)


class ClientPositionsView(BrokerAPIView):
    scopes = {"GET": Scope.CLIENTS_POSITIONS}

    @doc("A client's open positions")
    def get(self, request, user_id: str):
        client = selectors.client_for_broker(broker=self.broker, user_id=user_id)
        return Response({"user_id": client.user_id, **exchange_reads.positions(client.trader)})


class ClientWithdrawalsView(BrokerAPIView):
    scopes = {"GET": Scope.CLIENTS_WITHDRAWALS}

    @extend_schema(
        tags=TAGS, request=OBJ, responses=OBJ, summary="A client's withdrawal history", parameters=PAGE_PARAMS
    )
    def get(self, request, user_id: str):
        client = selectors.client_for_broker(broker=self.broker, user_id=user_id)
        return Response(self.paginate(selectors.client_withdrawals(client=client), "withdrawals", withdrawal_row))


# --- transfers ---------------------------------------------------------------------------------------------


class DepositView(BrokerAPIView):
    scopes = {"POST": Scope.TRANSFER_DEPOSIT}

    @doc("Deposit DCT from your balance to a client")
    def post(self, request, user_id: str):
        data = self.body()
        client = selectors.client_for_broker(broker=self.broker, user_id=user_id)
        amount = self.amount(data)
        memo = self.string(data, "memo", max_length=255)
        key = self.idempotency_key(data)
        transfer, created = client_services.client_deposit(
            broker=self.broker, client=client, amount=amount, idempotency_key=key, actor=self.actor, memo=memo
        )
        client.account.refresh_from_db(fields=["balance", "held"])
        return Response(
            {
                "ok": True,
                "transfer_id": transfer.pk,
                "user_id": client.user_id,
                "asset": transfer.asset,
                "amount": transfer.amount,
                "replayed": not created,
                "balance": _balance(client.account),
            },
            status=200,
        )


class WithdrawView(BrokerAPIView):
    scopes = {"POST": Scope.TRANSFER_WITHDRAW}

    @extend_schema(
        tags=TAGS, request=OBJ, responses=OBJ, summary="Create a withdrawal request for a client (funds are held)"
    )
    def post(self, request, user_id: str):
        data = self.body()
        client = selectors.client_for_broker(broker=self.broker, user_id=user_id)
        amount = self.amount(data)
        wallet = (
            self.string(data, "wallet_address", max_length=64)
            or self.string(data, "walletAddress", max_length=64)
            or client.wallet_address
        )
        w, created = withdrawal_services.withdrawal_request(
            client=client,
            amount=amount,
            wallet_address=wallet,
            idempotency_key=self.idempotency_key(data),
            actor=self.actor,
        )
        return Response({"ok": True, **withdrawal_row(w)}, status=201 if created else 200)


class TransferHistoryView(BrokerAPIView):
    scopes = {"GET": Scope.TRANSFER_HISTORY}

    @extend_schema(
        tags=TAGS,
        responses=OBJ,
        summary="Transfer records (deposits, OTC settlements, payouts, funding), newest first",
        parameters=[
            *PAGE_PARAMS,
            OpenApiParameter("user_id", str, description="only this client's"),
            OpenApiParameter("type", str, description="deposit, otc_settlement, payout or funding"),
        ],
    )
    def get(self, request):
        qs = selectors.transfers_for_broker(broker=self.broker)
        user_id = request.query_params.get("user_id")
        if user_id:
            qs = qs.filter(client__user_id=user_id, client__broker=self.broker)
        kind = request.query_params.get("type")
        if kind:
            if kind not in TransferKind.values:
                raise BrokerAPIError(f"type must be one of {', '.join(TransferKind.values)}", status_code=400)
            qs = qs.filter(kind=kind)
        return Response(self.paginate(qs, "transfers", _transfer_row))


# --- withdrawals / OTC -------------------------------------------------------------------------------------


class WithdrawalDetailView(BrokerAPIView):
    scopes = {"GET": Scope.WITHDRAWAL_READ}

    @doc("A single withdrawal")
    def get(self, request, withdrawal_id: str):
        return Response(
            withdrawal_row(selectors.withdrawal_for_broker(broker=self.broker, withdrawal_id=withdrawal_id))
        )


class PendingWithdrawalsView(BrokerAPIView):
    scopes = {"GET": Scope.WITHDRAWAL_LIST}

    @doc("Pending withdrawals you may lock (cooling period not over)", parameters=PAGE_PARAMS)
    def get(self, request):
        return Response(self.paginate(selectors.pending_withdrawals(broker=self.broker), "withdrawals", withdrawal_row))


class LockView(BrokerAPIView):
    scopes = {"POST": Scope.WITHDRAWAL_LOCK}

    @extend_schema(
        tags=TAGS,
        request=OBJ,
        responses=OBJ,
        summary="Lock a pending withdrawal (OTC fulfil): first come, first served",
    )
    def post(self, request, withdrawal_id: str):
        w = withdrawal_services.withdrawal_lock(broker=self.broker, withdrawal_id=withdrawal_id, actor=self.actor)
        return Response(
            {
                "ok": True,
                "status": w.status,
                "withdrawal_id": str(w.pk),
                "userWalletAddress": w.wallet_address,
                "amount": w.net_amount,
                "timeoutHours": w.timeout_hours,
                "lockedAt": w.locked_at.isoformat(),
            }
        )


class UnlockView(BrokerAPIView):
    scopes = {"POST": Scope.WITHDRAWAL_UNLOCK}

    @doc("Release your lock: back to pending")
    def post(self, request, withdrawal_id: str):
        w = withdrawal_services.withdrawal_unlock(broker=self.broker, withdrawal_id=withdrawal_id, actor=self.actor)
        return Response({"ok": True, "status": w.status, "withdrawal_id": str(w.pk)})


class CancelView(BrokerAPIView):
    """Not in the seed's table: the user may cancel during the cooling period (the seed's state table),
    and on a white-label site the user asks its broker, which asked for the withdrawal in the first place."""

    scopes = {"POST": Scope.TRANSFER_WITHDRAW}

    @doc("Cancel a pending withdrawal of one of your clients (the user's cancel, during the cooling period)")
    def post(self, request, withdrawal_id: str):
        w = selectors.withdrawal_for_broker(broker=self.broker, withdrawal_id=withdrawal_id)
        if w.broker_id != self.broker.pk:  # only the client's own broker speaks for the user
            raise BrokerAPIError("Withdrawal not found", status_code=404)
        w = withdrawal_services.withdrawal_cancel(withdrawal_id=w.pk, client=w.client, actor=self.actor)
        return Response({"ok": True, "status": w.status, "withdrawal_id": str(w.pk)})
