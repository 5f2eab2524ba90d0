"""The officer's kiosk screen: sign-in and session logic, QR decode, guidance, static page."""
