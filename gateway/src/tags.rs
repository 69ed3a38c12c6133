//! FIX tag numbers and enumerated values the gateway reads or writes (FIX 4.2 and 4.4 share them).

#![allow(missing_docs)] // the names are the FIX field names; the spec is their documentation

pub const ACCOUNT: u32 = 1;
pub const AVG_PX: u32 = 6;
pub const BEGIN_SEQ_NO: u32 = 7;
pub const BEGIN_STRING: u32 = 8;
pub const BODY_LENGTH: u32 = 9;
pub const CHECK_SUM: u32 = 10;
pub const CL_ORD_ID: u32 = 11;
pub const CUM_QTY: u32 = 14;
pub const END_SEQ_NO: u32 = 16;
pub const EXEC_ID: u32 = 17;
pub const EXEC_INST: u32 = 18;
pub const EXEC_TRANS_TYPE: u32 = 20;
pub const LAST_PX: u32 = 31;
pub const LAST_QTY: u32 = 32;
pub const MSG_SEQ_NUM: u32 = 34;
pub const MSG_TYPE: u32 = 35;
pub const NEW_SEQ_NO: u32 = 36;
pub const ORDER_ID: u32 = 37;
pub const ORDER_QTY: u32 = 38;
pub const ORD_STATUS: u32 = 39;
pub const ORD_TYPE: u32 = 40;
pub const ORIG_CL_ORD_ID: u32 = 41;
pub const POSS_DUP_FLAG: u32 = 43;
pub const PRICE: u32 = 44;
pub const REF_SEQ_NUM: u32 = 45;
pub const SENDER_COMP_ID: u32 = 49;
pub const SENDING_TIME: u32 = 52;
pub const SIDE: u32 = 54;
pub const SYMBOL: u32 = 55;
pub const TARGET_COMP_ID: u32 = 56;
pub const TEXT: u32 = 58;
pub const TIME_IN_FORCE: u32 = 59;
pub const TRANSACT_TIME: u32 = 60;
pub const POSS_RESEND: u32 = 97;
pub const ENCRYPT_METHOD: u32 = 98;
pub const CXL_REJ_REASON: u32 = 102;
pub const ORD_REJ_REASON: u32 = 103;
pub const HEART_BT_INT: u32 = 108;
pub const TEST_REQ_ID: u32 = 112;
pub const ORIG_SENDING_TIME: u32 = 122;
pub const GAP_FILL_FLAG: u32 = 123;
pub const RESET_SEQ_NUM_FLAG: u32 = 141;
pub const EXEC_TYPE: u32 = 150;
pub const LEAVES_QTY: u32 = 151;
pub const REF_TAG_ID: u32 = 371;
pub const REF_MSG_TYPE: u32 = 372;
pub const SESSION_REJECT_REASON: u32 = 373;
pub const BUSINESS_REJECT_REF_ID: u32 = 379;
pub const BUSINESS_REJECT_REASON: u32 = 380;
pub const CXL_REJ_RESPONSE_TO: u32 = 434;
pub const MASS_CANCEL_REQUEST_TYPE: u32 = 530;
pub const MASS_CANCEL_RESPONSE: u32 = 531;
pub const MASS_CANCEL_REJECT_REASON: u32 = 532;
pub const TOTAL_AFFECTED_ORDERS: u32 = 533;
pub const PASSWORD: u32 = 554;
/// Custom tag (user-defined range): self-trade prevention instruction on NewOrderSingle. Modelled
/// on CME's SelfMatchPreventionInstruction (8000): `N` cancel newest, `O` cancel oldest, plus our
/// `B` cancel both and `D` decrement and cancel. See `docs/GATEWAY.md`.
pub const SELF_TRADE_PREVENTION: u32 = 8000;

/// MsgType values.
pub mod msg_type {
    pub const HEARTBEAT: &[u8] = b"0";
    pub const TEST_REQUEST: &[u8] = b"1";
    pub const RESEND_REQUEST: &[u8] = b"2";
    pub const REJECT: &[u8] = b"3";
    pub const SEQUENCE_RESET: &[u8] = b"4";
    pub const LOGOUT: &[u8] = b"5";
    pub const LOGON: &[u8] = b"A";
    pub const EXECUTION_REPORT: &[u8] = b"8";
    pub const ORDER_CANCEL_REJECT: &[u8] = b"9";
    pub const NEW_ORDER_SINGLE: &[u8] = b"D";
    pub const ORDER_CANCEL_REQUEST: &[u8] = b"F";
    pub const ORDER_CANCEL_REPLACE_REQUEST: &[u8] = b"G";
    pub const BUSINESS_MESSAGE_REJECT: &[u8] = b"j";
    pub const ORDER_MASS_CANCEL_REQUEST: &[u8] = b"q";
    pub const ORDER_MASS_CANCEL_REPORT: &[u8] = b"r";

    /// Whether a MsgType is a session-level (administrative) message: resent as a gap fill.
    pub fn is_admin(value: &[u8]) -> bool {
        matches!(value, b"0" | b"1" | b"2" | b"3" | b"4" | b"5" | b"A")
    }
}

/// SessionRejectReason (373) values.
pub mod session_reject {
    pub const INVALID_TAG_NUMBER: u32 = 0;
    pub const REQUIRED_TAG_MISSING: u32 = 1;
    pub const TAG_NOT_DEFINED_FOR_MESSAGE: u32 = 2;
    pub const TAG_WITHOUT_VALUE: u32 = 4;
    pub const VALUE_OUT_OF_RANGE: u32 = 5;
    pub const INCORRECT_DATA_FORMAT: u32 = 6;
    pub const COMP_ID_PROBLEM: u32 = 9;
    pub const INVALID_MSG_TYPE: u32 = 11;
    pub const TAG_APPEARS_MORE_THAN_ONCE: u32 = 13;
}

/// BusinessRejectReason (380) values.
pub mod business_reject {
    pub const OTHER: u32 = 0;
    pub const UNSUPPORTED_MESSAGE_TYPE: u32 = 3;
    pub const APPLICATION_NOT_AVAILABLE: u32 = 4;
}
