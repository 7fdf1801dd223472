"""Routes of the broker API (``/api/v1/broker/``), the seed's table. ``{id}`` of a client is its ``user_id``."""

from django.urls import path

from . import views

app_name = "broker"

urlpatterns = [
    path("sub-brokers", views.SubBrokersView.as_view(), name="sub-brokers"),
    path("balance", views.BalanceView.as_view(), name="balance"),
    path("clients", views.ClientsView.as_view(), name="clients"),
    path("clients/<str:user_id>/upgrade-to-broker", views.UpgradeView.as_view(), name="client-upgrade"),
    path("clients/<str:user_id>/balance", views.ClientBalanceView.as_view(), name="client-balance"),
    path("clients/<str:user_id>/orders", views.ClientOrdersView.as_view(), name="client-orders"),
    path("clients/<str:user_id>/positions", views.ClientPositionsView.as_view(), name="client-positions"),
    path("clients/<str:user_id>/withdrawals", views.ClientWithdrawalsView.as_view(), name="client-withdrawals"),
    path("clients/<str:user_id>/deposit", views.DepositView.as_view(), name="client-deposit"),
    path("clients/<str:user_id>/withdraw", views.WithdrawView.as_view(), name="client-withdraw"),
    path("transfer/history", views.TransferHistoryView.as_view(), name="transfer-history"),
    path("withdrawals/pending", views.PendingWithdrawalsView.as_view(), name="withdrawals-pending"),
    path("withdrawal/<str:withdrawal_id>", views.WithdrawalDetailView.as_view(), name="withdrawal"),
    path("withdrawal/<str:withdrawal_id>/lock", views.LockView.as_view(), name="withdrawal-lock"),
    path("withdrawal/<str:withdrawal_id>/unlock", views.UnlockView.as_view(), name="withdrawal-unlock"),
    path("withdrawal/<str:withdrawal_id>/cancel", views.CancelView.as_view(), name="withdrawal-cancel"),
]
