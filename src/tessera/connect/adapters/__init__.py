"""Channel adapters: SMPP (:mod:`sms_smpp`) and WeChat official-account template messages (:mod:`wechat`)."""
