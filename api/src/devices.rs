//! The caller's devices and push tokens: `GET /v1/devices`,
//! `POST /v1/devices`, `DELETE /v1/devices/{device_id}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{validate, ApiError, ApiResult, ApiState, Auth, Ids, JsonBody};
use confab_directory::store::{Device, Platform};

/// `POST /v1/devices`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterDevice {
    platform: Platform,
    push_token: String,
}

/// A device as the API shows it.
#[derive(Debug, Serialize)]
pub struct DeviceView {
    device_id: u64,
    platform: Platform,
    push_token: String,
    created_at: u64,
    /// False once the provider reported the token dead.
    push_active: bool,
}

impl From<Device> for DeviceView {
    fn from(d: Device) -> Self {
        DeviceView {
            device_id: d.id,
            platform: d.platform,
            push_token: d.push_token,
            created_at: d.created_at,
            push_active: d.push_invalid_at.is_none(),
        }
    }
}

/// The caller's devices.
#[derive(Debug, Serialize)]
pub struct DeviceList {
    devices: Vec<DeviceView>,
}

/// Registers a device (idempotent per push token); its `device_id` is the
/// one to present to the gateway.
pub async fn register(
    State(state): State<ApiState>,
    auth: Auth,
    JsonBody(req): JsonBody<RegisterDevice>,
) -> ApiResult<Json<DeviceView>> {
    validate::push_token(&req.push_token, req.platform == Platform::Webhook)?;
    let device = state
        .store()
        .register_device(auth.user_id, req.platform, &req.push_token)
        .await?;
    Ok(Json(device.into()))
}

/// Lists the caller's devices.
pub async fn list(State(state): State<ApiState>, auth: Auth) -> ApiResult<Json<DeviceList>> {
    let devices = state.store().devices(auth.user_id).await?;
    Ok(Json(DeviceList {
        devices: devices.into_iter().map(DeviceView::from).collect(),
    }))
}

/// Unregisters one of the caller's devices (404 for anyone else's).
pub async fn unregister(
    State(state): State<ApiState>,
    auth: Auth,
    Ids(device_id): Ids<u64>,
) -> ApiResult<StatusCode> {
    if state
        .store()
        .unregister_device(auth.user_id, device_id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(
            "UNKNOWN_DEVICE",
            format!("you have no device {device_id}"),
        ))
    }
}
