//! The audit action catalogue (`/actions`) and entity schemas (`/schemas`).
//!
//! Action names are Slack's, taken from the action tables of the official Java SDK
//! (`com.slack.api.audit.Actions`). The few names in `role`, `subteam`, `canvas`,
//! `huddle`, `workflow_v2` and `account_type_role` are modelled on Slack's naming so
//! that every entity type of reference §4.4 appears; they are not verified names.

use std::collections::HashMap;
use std::sync::OnceLock;

pub(crate) const CATEGORIES: &[(&str, &[&str])] = &[
    (
        "workspace_or_org",
        &[
            "workspace_created",
            "workspace_deleted",
            "organization_created",
            "organization_deleted",
            "organization_renamed",
            "organization_domain_changed",
            "organization_accepted_migration",
            "organization_declined_migration",
            "emoji_added",
            "emoji_removed",
            "emoji_aliased",
            "emoji_renamed",
            "billing_address_added",
            "migration_scheduled",
            "workspace_accepted_migration",
            "workspace_declined_migration",
            "migration_completed",
            "migration_dms_mpdms_completed",
            "corporate_exports_approved",
            "corporate_exports_enabled",
            "manual_export_started",
            "manual_export_completed",
            "manual_user_export_started",
            "manual_user_export_completed",
            "scheduled_export_started",
            "scheduled_export_completed",
            "channels_export_started",
            "channels_export_completed",
            "ekm_enrolled",
            "ekm_unenrolled",
            "ekm_key_added",
            "ekm_key_removed",
            "ekm_clear_cache_set",
            "ekm_logging_config_set",
            "ekm_slackbot_enroll_notification_sent",
            "ekm_slackbot_unenroll_notification_sent",
            "ekm_slackbot_rekey_notification_sent",
            "ekm_slackbot_logging_notification_sent",
            "external_shared_channel_connected",
            "external_shared_channel_disconnected",
            "pref.sso_setting_changed",
            "pref.two_factor_auth_changed",
            "pref.public_channel_retention_changed",
            "pref.private_channel_retention_changed",
            "pref.dm_retention_changed",
            "pref.file_retention_changed",
            "pref.retention_override_changed",
            "pref.block_download_and_copy_on_untrusted_mobile",
            "pref.block_file_download_for_unapproved_ip",
            "pref.mobile_secondary_auth_timeout_changed",
            "pref.dlp_access_changed",
            "pref.ent_browser_control",
            "pref.ent_required_browser_name",
            "pref.ent_required_browser",
            "pref.allow_calls",
            "pref.custom_tos",
            "pref.who_can_manage_guests",
            "pref.allow_message_deletion",
            "pref.msg_edit_window_mins",
            "pref.disallow_public_file_urls",
            "pref.who_can_create_public_channels",
            "pref.who_can_archive_channels",
            "pref.who_can_create_private_channels",
            "pref.app_whitelist_enabled",
            "pref.app_dir_only",
            "pref.sign_in_with_slack_disabled",
            "pref.hide_referers",
            "pref.who_can_dm_anyone",
            "pref.emoji_only_admins",
            "pref.display_real_names",
            "pref.session_duration_changed",
            "pref.session_duration_type_changed",
            "pref.slack_connect_allowed_workspaces",
            "pref.allow_huddles",
            "pref.workspace_access_changed",
            "manual_export_downloaded",
            "manual_export_deleted",
            "scheduled_export_downloaded",
            "channels_export_downloaded",
            "approved_orgs_added",
            "approved_orgs_removed",
            "organization_verified",
            "organization_unverified",
            "organization_public_url_updated",
            "idp_configuration_added",
            "idp_configuration_deleted",
            "idp_prod_configuration_updated",
            "idp_test_configuration_updated",
            "team.unsupportedVersions.start.success",
            "intune_enabled",
            "intune_disabled",
            "domain_created",
            "domain_verified",
            "domain_deleted",
            "slack_connect_invite_routing_enabled",
            "slack_connect_invite_routing_disabled",
        ],
    ),
    (
        "user",
        &[
            "custom_tos_accepted",
            "guest_created",
            "guest_deactivated",
            "guest_reactivated",
            "owner_transferred",
            "role_change_to_admin",
            "role_change_to_guest",
            "role_change_to_owner",
            "role_change_to_user",
            "user_created",
            "user_deactivated",
            "user_login",
            "user_login_failed",
            "user_logout",
            "user_reactivated",
            "user_session_invalidated",
            "user_session_settings_changed",
            "guest_expiration_set",
            "guest_expiration_cleared",
            "guest_expired",
            "user_logout_compromised",
            "user_session_reset_by_admin",
            "user_logout_non_compliant_mobile_app_version",
            "user_force_upgrade_non_compliant_mobile_app_version",
            "connect_dm_invite_generated",
            "connect_dm_invite_revoked",
            "connect_dm_invite_accepted",
            "connect_dm_invite_ignored",
            "user_email_updated",
            "user_username_updated",
            "user_joined_workspace",
            "guest_joined_workspace",
        ],
    ),
    (
        "file",
        &[
            "file_downloaded",
            "file_uploaded",
            "file_public_link_created",
            "file_public_link_revoked",
            "file_shared",
            "file_downloaded_blocked",
            "file_malicious_content_detected",
            "file_deleted",
        ],
    ),
    (
        "channel",
        &[
            "user_channel_join",
            "user_channel_leave",
            "guest_channel_join",
            "guest_channel_leave",
            "public_channel_created",
            "private_channel_created",
            "public_channel_deleted",
            "private_channel_deleted",
            "public_channel_archive",
            "private_channel_archive",
            "public_channel_unarchive",
            "private_channel_unarchive",
            "public_channel_converted_to_private",
            "channel_workspaces_updated",
            "external_shared_channel_invite_sent",
            "external_shared_channel_invite_accepted",
            "external_shared_channel_invite_declined",
            "external_shared_channel_invite_expired",
            "external_shared_channel_invite_revoked",
            "external_shared_channel_connected",
            "external_shared_channel_disconnected",
            "external_shared_channel_reconnected",
            "mpim_converted_to_private",
            "channel_moved",
            "group_converted_to_channel",
            "channel_renamed",
            "channel_posting_permissions_updated",
            "channel_email_address_created",
            "channel_email_address_deleted",
            "channel_retention_changed",
            "connect_dm_invite_generated",
            "connect_dm_invite_accepted",
            "dm_user_added",
            "public_channel_preview",
        ],
    ),
    (
        "app",
        &[
            "app_installed",
            "app_uninstalled",
            "app_scopes_expanded",
            "app_approved",
            "app_resources_granted",
            "app_token_preserved",
            "workflow_app_token_preserved",
            "bot_token_upgraded",
            "bot_token_downgraded",
            "app_restricted",
            "app_removed_from_whitelist",
            "org_app_workspace_added",
            "org_app_workspace_removed",
            "org_app_installed",
            "org_app_uninstalled",
            "org_app_future_workspace_install_enabled",
            "org_app_future_workspace_install_disabled",
            "org_app_upgraded_to_org_install",
        ],
    ),
    (
        "workflow_builder",
        &[
            "workflow_created",
            "workflow_deleted",
            "workflow_published",
            "workflow_unpublished",
            "workflow_responses_csv_download",
        ],
    ),
    (
        "message",
        &[
            "message_tombstoned",
            "message_restored",
            "message_flagged",
            "message_moderated",
            "thread_replies_disabled",
            "thread_replies_enabled",
        ],
    ),
    (
        "barrier",
        &["barrier_created", "barrier_updated", "barrier_deleted"],
    ),
    ("anomaly", &["anomaly"]),
    ("slack_cli", &["cli_login", "cli_logout", "cli_app_deploy"]),
    ("subteam", &["subteam_created", "subteam_members_updated"]),
    ("role", &["role_assigned", "role_removed"]),
    ("account_type_role", &["account_type_role_assigned"]),
    (
        "workflow_v2",
        &["workflow_v2_published", "workflow_v2_deleted"],
    ),
    (
        "canvas",
        &["canvas_created", "canvas_edited", "canvas_shared"],
    ),
    ("huddle", &["huddle_started", "huddle_ended"]),
];

/// The kind of object an audit entry's `entity` describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum EntityKind {
    User,
    Channel,
    File,
    App,
    Workspace,
    Enterprise,
    Message,
    Workflow,
    WorkflowV2,
    Usergroup,
    Barrier,
    Role,
    AccountTypeRole,
    Canvas,
    Huddle,
}

impl EntityKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            EntityKind::User => "user",
            EntityKind::Channel => "channel",
            EntityKind::File => "file",
            EntityKind::App => "app",
            EntityKind::Workspace => "workspace",
            EntityKind::Enterprise => "enterprise",
            EntityKind::Message => "message",
            EntityKind::Workflow => "workflow",
            EntityKind::WorkflowV2 => "workflow_v2",
            EntityKind::Usergroup => "usergroup",
            EntityKind::Barrier => "barrier",
            EntityKind::Role => "role",
            EntityKind::AccountTypeRole => "account_type_role",
            EntityKind::Canvas => "canvas",
            EntityKind::Huddle => "huddle",
        }
    }
}

pub(crate) struct Action {
    pub name: &'static str,
    pub category: &'static str,
    pub entity: EntityKind,
}

pub(crate) struct Catalog {
    pub actions: Vec<Action>,
    by_name: HashMap<&'static str, u16>,
}

impl Catalog {
    pub(crate) fn index_of(&self, name: &str) -> Option<u16> {
        self.by_name.get(name).copied()
    }
}

fn entity_for(name: &str, category: &str) -> EntityKind {
    match category {
        "user" | "anomaly" => EntityKind::User,
        "file" => EntityKind::File,
        "channel" => EntityKind::Channel,
        "app" | "slack_cli" => EntityKind::App,
        "workflow_builder" => EntityKind::Workflow,
        "message" => EntityKind::Message,
        "barrier" => EntityKind::Barrier,
        "subteam" => EntityKind::Usergroup,
        "role" => EntityKind::Role,
        "account_type_role" => EntityKind::AccountTypeRole,
        "workflow_v2" => EntityKind::WorkflowV2,
        "canvas" => EntityKind::Canvas,
        "huddle" => EntityKind::Huddle,
        _ => {
            let org_level = [
                "organization_",
                "ekm_",
                "idp_",
                "domain_",
                "intune_",
                "approved_orgs",
                "corporate_exports",
            ];
            if org_level.iter().any(|p| name.starts_with(p)) {
                EntityKind::Enterprise
            } else {
                EntityKind::Workspace
            }
        }
    }
}

pub(crate) fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let mut actions = Vec::new();
        let mut by_name = HashMap::new();
        for (category, names) in CATEGORIES {
            for name in names.iter() {
                if by_name.contains_key(name) {
                    continue;
                }
                by_name.insert(*name, actions.len() as u16);
                actions.push(Action {
                    name,
                    category,
                    entity: entity_for(name, category),
                });
            }
        }
        Catalog { actions, by_name }
    })
}

/// Body of `GET /audit/v1/actions`.
pub(crate) fn actions_body() -> String {
    let mut map = serde_json::Map::new();
    for (category, names) in CATEGORIES {
        map.insert(category.to_string(), serde_json::json!(names));
    }
    serde_json::json!({ "actions": map }).to_string()
}

/// Body of `GET /audit/v1/schemas`: one element per entity type, each with its fields.
pub(crate) fn schemas_body() -> String {
    use serde_json::json;
    let s = "string";
    let schemas = json!([
        {"type": "workspace", "workspace": {"id": s, "name": s, "domain": s}},
        {"type": "enterprise", "enterprise": {"id": s, "name": s, "domain": s}},
        {"type": "user", "user": {"id": s, "name": s, "email": s, "team": s}},
        {"type": "file", "file": {"id": s, "name": s, "filetype": s, "title": s}},
        {"type": "channel", "channel": {"id": s, "name": s, "privacy": s, "is_shared": "boolean", "is_org_shared": "boolean", "teams_shared_with": "array"}},
        {"type": "app", "app": {"id": s, "name": s, "is_distributed": "boolean", "is_directory_approved": "boolean", "is_workflow_app": "boolean", "scopes": "array", "scopes_bot": "array", "creator": s, "team": s}},
        {"type": "workflow", "workflow": {"id": s, "name": s}},
        {"type": "workflow_v2", "workflow_v2": {"id": s, "app_id": s, "date_updated": "integer", "callback_id": s, "name": s, "updated_by": s, "step_configuration": "array"}},
        {"type": "barrier", "barrier": {"id": s, "primary_usergroup": s, "barriered_from_usergroup": "array", "restricted_subjects": "array"}},
        {"type": "message", "message": {"team": s, "channel": s, "timestamp": s}},
        {"type": "usergroup", "usergroup": {"id": s, "name": s}},
        {"type": "role", "role": {"id": s, "name": s, "type": s}},
        {"type": "account_type_role", "account_type_role": {"id": s, "name": s}},
        {"type": "canvas", "canvas": {"id": s, "filetype": s, "title": s}},
        {"type": "huddle", "huddle": {"id": s, "date_start": "integer", "date_end": "integer", "participants": "array"}},
    ]);
    json!({ "schemas": schemas }).to_string()
}
