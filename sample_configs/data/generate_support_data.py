"""Generate the bundled customer-support dataset, ``support.jsonl``.

The file holds several hundred single-turn exchanges between a shopper and the support
assistant of "Larkspur Goods", a made-up online store. Every row has four fields:

* ``instruction``: what the customer wrote (casual, formal, terse or with a typo),
* ``response``: the assistant's answer (25 to 70 words),
* ``category``: a coarse topic such as ORDER, REFUND or ACCOUNT,
* ``intent``: the fine-grained request, such as cancel_order or check_refund_status.

Templates below carry ``{{Placeholder}}`` slots (order numbers, amounts, dates, tracking
numbers, store contact details); each row fills them with concrete, realistic values, so no
braces reach the output. Responses only mention details the customer gave, or details the
store could look up from an order or invoice number the customer gave.

The script uses only the standard library and a fixed seed: running it again rewrites the
same bytes. Rows are shuffled, so any contiguous slice covers many intents.

Usage::

    python sample_configs/data/generate_support_data.py            # writes support.jsonl here
    python sample_configs/data/generate_support_data.py --out x.jsonl
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import random
import re
import sys
from pathlib import Path

SEED = 20240611
ROWS_PER_INTENT = 24
MIN_RESPONSE_WORDS = 25
MAX_RESPONSE_WORDS = 70
MAX_INSTRUCTION_WORDS = 24

# Store-wide facts: the same in every row, as they would be for one real shop.
STORE_FACTS = {
    "Website URL": "www.larkspurgoods.example",
    "Business Hours": "Monday to Saturday, 8 AM to 8 PM Eastern",
    "Support Phone": "1-800-555-0147",
    "Support Email": "support@larkspurgoods.example",
    "Return Window": "30 days",
    "Refund Days": "5 to 7 business days",
    "Standard Shipping Time": "3 to 5 business days",
    "Free Shipping Threshold": "$50",
    "Restocking Fee": "$25",
}

# Details the customer has to supply before the assistant may repeat them.
GIVEN = {"Order Number", "Invoice Number", "Item", "Account Email", "Shipping Address",
         "City", "Customer Name", "Tracking Number"}
# Details the assistant can look up once the customer gives an order or invoice number.
LOOKED_UP = {"Tracking Number", "Delivery Date", "Date", "Refund Amount", "Order Total",
             "Carrier", "Card Ending"}
LOOKUP_KEYS = {"Order Number", "Invoice Number"}

FIRST_NAMES = ["Maya", "Daniel", "Priya", "Tomasz", "Aisha", "Lucas", "Mei", "Jordan",
               "Fatima", "Oliver", "Sofia", "Kwame", "Elena", "Ravi", "Hannah", "Diego",
               "Yuki", "Grace", "Omar", "Ingrid", "Marcus", "Leila", "Noah", "Camila"]
LAST_NAMES = ["Morales", "Chen", "Okafor", "Novak", "Patel", "Jensen", "Haddad", "Kim",
              "Rossi", "Walsh", "Nakamura", "Mensah", "Garcia", "Lindqvist", "Brennan"]
ITEMS = ["a pair of trail running shoes", "the walnut desk lamp", "a cast iron skillet",
         "a linen duvet cover", "the wireless earbuds", "a wool throw blanket",
         "the ceramic pour-over set", "a kids' rain jacket", "the bamboo cutting board",
         "a steel water bottle", "the canvas weekender bag", "a set of glass food containers"]
CARRIERS = ["UPS", "FedEx", "USPS", "DHL"]
STREETS = ["Maple Street", "Oak Avenue", "Harbor Road", "Cedar Lane", "Willow Drive",
           "Pine Court", "Elm Street", "Riverside Boulevard", "Birch Way", "Lakeview Terrace"]
CITIES = [("Columbus", "OH", "432"), ("Portland", "OR", "972"), ("Austin", "TX", "787"),
          ("Raleigh", "NC", "276"), ("Denver", "CO", "802"), ("Madison", "WI", "537"),
          ("Tucson", "AZ", "857"), ("Albany", "NY", "122"), ("Boise", "ID", "837"),
          ("Savannah", "GA", "314")]
ORDER_PREFIXES = ["BX", "LK", "RT", "MQ", "GD"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

# (category, intent, instruction templates, response templates)
INTENTS: list[tuple[str, str, list[str], list[str]]] = [
    ("ORDER", "place_order", [
        "I want to buy {{Item}}",
        "how do I place an order",
        "Could you help me order {{Item}}?",
        "i'd like to purchase a couple of things from your store",
        "What are the steps to make a purchase on your website?",
        "need to order {{Item}} today",
        "Can I place an order over the phone?",
    ], [
        "Happy to help you order {{Item}}! Find it at {{Website URL}}, select Add to Cart and go "
        "to Checkout. Confirm your shipping address and payment method, then choose Place "
        "Order. A confirmation email with your order number arrives within a few minutes.",
        "Thanks for shopping with us. To place an order, sign in at {{Website URL}}, add the "
        "items you want to your cart and follow the checkout steps. If you prefer, our team "
        "can take your order by phone at {{Support Phone}}, {{Business Hours}}.",
        "Of course! Open the product page, choose the size or color you want and select Add "
        "to Cart. When you are ready, open your cart, review the items and complete checkout. "
        "Orders placed before 2 PM Eastern usually ship the same day.",
        "I can walk you through it. Search for {{Item}} at {{Website URL}}, add it to your "
        "cart and go to checkout. Enter your delivery details, pick a shipping speed and "
        "confirm payment. Your order number appears on the final screen.",
    ]),
    ("ORDER", "cancel_order", [
        "I need to cancel order {{Order Number}}",
        "how can I cancel my order?",
        "please cancel my last purchase, I ordered the wrong size",
        "Could you help me cancel the order I placed this morning?",
        "cancel order {{Order Number}} please",
        "I changed my mind about {{Item}}, can I still cancel?",
        "Is it too late to cancel order {{Order Number}}?",
    ], [
        "I can help with that. Orders can be cancelled free of charge until they ship. Go to "
        "Your Orders at {{Website URL}}, choose the order and select Cancel Order. If the "
        "button is missing, the order has shipped and you can return it once it arrives.",
        "Sorry to hear you want to cancel. As long as the package has not left our warehouse, "
        "cancelling is free: open Order History, pick the order and select Cancel. The full "
        "amount goes back to your original payment method.",
        "I have checked order {{Order Number}} and it has not shipped yet, so it can still be "
        "cancelled at no cost. Open Your Orders, select {{Order Number}} and choose Cancel "
        "Order. Your payment of {{Order Total}} will be released within {{Refund Days}}.",
        "No problem. If the order with {{Item}} has not shipped yet, you can cancel it from "
        "Your Orders by selecting the item and choosing Cancel Item. If it already shipped, "
        "decline the delivery or send it back within {{Return Window}} for a full refund.",
    ]),
    ("ORDER", "change_order", [
        "I want to change the size on order {{Order Number}}",
        "can i add another item to my order",
        "How do I modify an order I already placed?",
        "need to swap the color of something I just ordered",
        "Is it possible to update the quantity on order {{Order Number}}?",
        "I ordered {{Item}} but want a different one, can I change it",
    ], [
        "Orders can be edited for about one hour after you place them. Open Your Orders, "
        "select the order and choose Edit Items to change sizes, colors or quantities. After "
        "that the order is packed, so the quickest option is to cancel it and order again.",
        "I understand plans change. If your order still shows Processing, select it in Your "
        "Orders and use Modify Order to add, remove or swap items. Once it moves to Preparing "
        "for Shipment it cannot be edited, but returns are free within {{Return Window}}.",
        "Order {{Order Number}} is still processing, so you can change it now. Open it in "
        "Your Orders, choose Edit Items, make your changes and confirm. Any price difference "
        "is charged or refunded automatically to your card ending in {{Card Ending}}.",
        "Sure, let's fix that. If the order with {{Item}} still shows Processing, select Edit "
        "Items in Your Orders and choose the option you want. If it already shipped, you can "
        "exchange it free of charge within {{Return Window}} from the Returns page.",
    ]),
    ("ORDER", "track_order", [
        "where is my order {{Order Number}}",
        "Can you tell me where my package is?",
        "track order {{Order Number}}",
        "I would like to know the status of my recent order.",
        "how do I track my parcel",
        "my order {{Order Number}} still hasn't arrived, where is it?",
        "What's the tracking number for order {{Order Number}}?",
    ], [
        "You can follow your package from Your Orders at {{Website URL}}: select the order and "
        "choose Track Package to see every carrier scan. The tracking link is also in your "
        "shipping email. If nothing updates for three days, tell us and we will investigate.",
        "Happy to help you find it. Sign in, open Order History and click Track next to the "
        "order. You will see the carrier, the tracking number and the latest location. "
        "Tracking usually starts updating within 24 hours after the label is created.",
        "Order {{Order Number}} shipped with {{Carrier}} under tracking number {{Tracking "
        "Number}}. The latest scan shows it on the way, and the estimated delivery is "
        "{{Delivery Date}}. You can follow each update from Your Orders or on the {{Carrier}} "
        "website.",
        "Thanks for waiting. Your order {{Order Number}} is in transit with {{Carrier}}, "
        "tracking number {{Tracking Number}}, and should arrive on {{Delivery Date}}. If it "
        "has not arrived by then, reply here and we will open a trace with the carrier.",
    ]),
    ("SHIPPING", "change_shipping_address", [
        "I need to change the shipping address on order {{Order Number}}",
        "how do i update my delivery address",
        "Could you send my order to {{Shipping Address}} instead?",
        "I moved, please change the address on my account",
        "wrong address on my order, can you fix it?",
        "Please ship order {{Order Number}} to {{Shipping Address}}.",
    ], [
        "You can change the address while the order is still processing. Open Your Orders at "
        "{{Website URL}}, select the order and choose Change Shipping Address. Once a package "
        "has shipped, you can often redirect it from the carrier's tracking page.",
        "No problem. To update the address for future orders, go to Account Settings, then "
        "Addresses, and edit or add an entry. For an order that has not shipped yet, open it "
        "in Your Orders and pick Change Address before it moves to packing.",
        "I have noted the new address: {{Shipping Address}}. If the order has not shipped yet, "
        "it will be updated right away and you will get a confirmation email. If it already "
        "left our warehouse, we can ask the carrier to redirect the package.",
        "Done. Order {{Order Number}} will now ship to {{Shipping Address}}. You will receive "
        "an updated confirmation email within a few minutes. Because the order had not been "
        "packed yet, the delivery estimate stays the same: {{Delivery Date}}.",
        "Order {{Order Number}} has not shipped yet, so you can still update it. Open the "
        "order in Your Orders, select Change Shipping Address and enter the new details. "
        "Please double check the postal code, since the carrier routes packages by it.",
    ]),
    ("SHIPPING", "set_up_shipping_address", [
        "how do I add a new shipping address",
        "I want to save {{Shipping Address}} as my default address",
        "Can I store more than one delivery address on my account?",
        "where do i set up a shipping address",
        "Please help me add my work address to my profile.",
        "add a second address to my account",
    ], [
        "Sure! Sign in at {{Website URL}}, open Account Settings and select Addresses. Choose "
        "Add New Address, fill in the details and save. You can store up to ten addresses and "
        "mark one as the default, which is pre-selected at checkout.",
        "Adding an address takes a minute. Go to Your Account, then Addresses, and select Add "
        "Address. Enter the recipient name, street, city and postal code, then save. At "
        "checkout you can pick any saved address from the list.",
        "Great choice. Go to Account Settings, then Addresses, and select Add New Address. "
        "Enter {{Shipping Address}}, tick Make this my default address and save. From now on "
        "it will be selected automatically every time you check out.",
    ]),
    ("DELIVERY", "delivery_period", [
        "how long does delivery take",
        "When will my order {{Order Number}} arrive?",
        "What is the usual shipping time to {{City}}?",
        "how many days until i get my stuff",
        "Can you give me an estimated delivery date for order {{Order Number}}?",
        "If I order today, when will it get here?",
    ], [
        "Standard shipping takes {{Standard Shipping Time}} after the order leaves our "
        "warehouse, and express shipping takes one to two business days. Orders placed before "
        "2 PM Eastern usually ship the same day. Checkout shows the exact estimate.",
        "Delivery time depends on the shipping speed you choose. Standard delivery arrives in "
        "{{Standard Shipping Time}}, express in one to two business days, and next-day "
        "delivery is available in most large cities. Your order confirmation shows the date.",
        "Order {{Order Number}} is on its way with {{Carrier}} and is expected to arrive on "
        "{{Delivery Date}}. You can follow it with tracking number {{Tracking Number}}. During "
        "busy periods the estimate can shift by a day, and tracking always shows the latest.",
        "Deliveries to {{City}} with standard shipping usually take {{Standard Shipping "
        "Time}}, and express orders arrive in one to two business days. The exact estimate "
        "for your address appears at checkout before you pay.",
    ]),
    ("DELIVERY", "delivery_options", [
        "what shipping options do you have",
        "Do you offer express delivery?",
        "can I pick up my order somewhere instead of home delivery",
        "Which delivery methods are available for my area?",
        "is there free shipping??",
        "What are my options if I need something delivered fast?",
    ], [
        "We offer three options: Standard shipping in {{Standard Shipping Time}}, free on "
        "orders over {{Free Shipping Threshold}}; Express shipping in one to two business "
        "days; and Next-Day delivery in most metro areas. Checkout lists what your address "
        "can get.",
        "You can choose Standard, Express or Next-Day delivery at checkout, and in many areas "
        "you can collect your order from a partner locker at no charge. Standard shipping is "
        "free when your order total is above {{Free Shipping Threshold}}.",
        "Good question! Shipping options depend on your address, so enter your postal code at "
        "checkout to see them. Most customers can choose Standard, Express or Next-Day "
        "delivery, and orders above {{Free Shipping Threshold}} ship free with Standard.",
    ]),
    ("DELIVERY", "missing_package", [
        "my package says delivered but it's not here",
        "Order {{Order Number}} shows as delivered but I never received it.",
        "I think my parcel was stolen",
        "package missing, tracking says delivered yesterday",
        "What should I do if my order never arrived?",
    ], [
        "I'm sorry your package is missing. Please check with neighbors and around your "
        "building, since carriers sometimes leave parcels in a safe spot. If it has not turned "
        "up within 48 hours, report it from Your Orders and we will replace or refund it.",
        "That is frustrating, and we will make it right. Carriers occasionally mark a package "
        "delivered a day early, so please wait until tomorrow evening. If it is still missing, "
        "write to {{Support Email}} and we will open a claim and ship a replacement.",
        "I'm sorry about this. {{Carrier}} marked order {{Order Number}} as delivered, so I "
        "have opened a missing package claim for you. If it does not turn up within 48 hours, "
        "we will ship a replacement at no cost or refund {{Order Total}}, whichever you prefer.",
    ]),
    ("REFUND", "get_refund", [
        "I want a refund for order {{Order Number}}",
        "how do i get my money back",
        "The item arrived damaged, can I get a refund?",
        "I'd like to return {{Item}} and get a refund",
        "refund please, the product didn't work",
        "Can I request a refund for something I bought last week?",
    ], [
        "I'm sorry it didn't work out. You can request a refund within {{Return Window}} of "
        "delivery: open Your Orders, select the item and choose Return or Refund. Print the "
        "free label, and once the carrier scans it your refund is issued within {{Refund "
        "Days}}.",
        "Of course. Start a return from Your Orders at {{Website URL}} and choose the reason. "
        "For damaged or faulty items you do not need to send anything back, just upload a "
        "photo. Refunds go to your original payment method within {{Refund Days}}.",
        "I have started a refund for order {{Order Number}}. A prepaid return label will reach "
        "your inbox within an hour. As soon as the carrier scans the package, we will refund "
        "{{Refund Amount}} to your original payment method, usually within {{Refund Days}}.",
        "No problem. Go to Your Orders, select {{Item}} and choose Return for Refund. Drop the "
        "package at any carrier location with the free label we email you. Your refund is "
        "issued within {{Refund Days}} after the return is scanned.",
    ]),
    ("REFUND", "check_refund_status", [
        "where is my refund",
        "Has the refund for order {{Order Number}} been processed?",
        "I returned something two weeks ago and still no money",
        "check refund status for order {{Order Number}}",
        "When will I see my refund on my card?",
        "refund hasn't shown up yet, can you check?",
    ], [
        "You can follow your refund in Your Orders: returned items show Refund Issued with the "
        "date once it is processed. Banks usually need {{Refund Days}} to show the credit. If "
        "it has been longer, send us your order number and we will trace the payment.",
        "I understand waiting is frustrating. Refunds are issued as soon as the return reaches "
        "our warehouse, and your bank may take another {{Refund Days}} to post it. Please "
        "share your order number and I will check exactly where your refund stands.",
        "The refund for order {{Order Number}} was issued on {{Date}} for {{Refund Amount}} to "
        "your card ending in {{Card Ending}}. Depending on your bank, it may take up to "
        "{{Refund Days}} to appear on your statement. If it is not there by then, let us know.",
        "Good news: we received your return for order {{Order Number}} and approved a refund "
        "of {{Refund Amount}}. It went to your original payment method, and most banks post it "
        "within {{Refund Days}}. You will also get an email receipt for the refund.",
    ]),
    ("REFUND", "check_refund_policy", [
        "what is your refund policy",
        "Can I return something I already used?",
        "How long do I have to return an item?",
        "do you refund shipping costs?",
        "Are sale items refundable?",
        "what's the return window",
    ], [
        "You can return most items within {{Return Window}} of delivery for a full refund to "
        "your original payment method. Items should be unused and in their original packaging. "
        "Return shipping is free, and refunds are issued within {{Refund Days}}.",
        "Our policy is simple: unused items can be returned within {{Return Window}}, sale "
        "items included. Original shipping costs are refunded when the return is our fault, "
        "such as a damaged or wrong item. Full details are on the Returns page at {{Website "
        "URL}}.",
        "Most purchases are refundable within {{Return Window}} of delivery. Personal care "
        "items and gift cards cannot be returned once opened. Start any return from Your "
        "Orders, and your refund follows within {{Refund Days}} of the item reaching us.",
    ]),
    ("CANCEL", "check_cancellation_fee", [
        "is there a fee to cancel my order",
        "Will I be charged if I cancel order {{Order Number}}?",
        "how much does it cost to cancel",
        "Do you charge a cancellation fee?",
        "if i cancel now do i lose money",
    ], [
        "There is no fee to cancel an order before it ships. After shipment you can refuse the "
        "delivery or return it within {{Return Window}}; only large furniture carries a "
        "{{Restocking Fee}} restocking fee. Everything else is refunded in full.",
        "Cancelling is free as long as the order has not left our warehouse, and the full "
        "amount is released to your payment method within {{Refund Days}}. Once it has "
        "shipped, a free return takes the place of a cancellation.",
        "Good news: order {{Order Number}} has not shipped yet, so there is no cancellation "
        "fee. If you cancel now, the full {{Order Total}} will be released to your card ending "
        "in {{Card Ending}} within {{Refund Days}}.",
    ]),
    ("PAYMENT", "payment_issue", [
        "my payment didn't go through",
        "Why was my card declined at checkout?",
        "i was charged twice for order {{Order Number}}",
        "There is a problem with my payment, can you help?",
        "payment keeps failing",
        "I got an error when paying for my order",
    ], [
        "Sorry about the trouble at checkout. Please confirm that the card number, expiry date "
        "and billing postal code match your bank records exactly. If it still fails, your bank "
        "may have blocked the charge as a precaution, and a quick call to them usually helps.",
        "Payment errors usually come from a mismatched billing address, an expired card or a "
        "bank security check. Try again after checking those details, or use another method "
        "such as PayPal. If it keeps failing, call us at {{Support Phone}}, {{Business Hours}}.",
        "I'm sorry about the double charge on order {{Order Number}}. The second charge of "
        "{{Order Total}} is a temporary authorization, not a completed payment, and your bank "
        "will release it within {{Refund Days}}. If it is still there after that, we will "
        "refund it directly.",
    ]),
    ("PAYMENT", "check_payment_methods", [
        "what payment methods do you accept",
        "Can I pay with PayPal?",
        "do you take apple pay",
        "Is it possible to pay in installments?",
        "Which credit cards can I use on your website?",
        "can i pay cash on delivery",
    ], [
        "We accept Visa, Mastercard, American Express and Discover, as well as PayPal, Apple "
        "Pay and Google Pay. Gift cards can be combined with any of these. The payment step "
        "at checkout lists every method available for your order.",
        "You can pay with major credit and debit cards, PayPal, Apple Pay or Google Pay. For "
        "orders over $100 you can also split the payment into four interest-free installments "
        "at checkout. We do not currently accept cash on delivery.",
        "Thanks for asking! Checkout supports all major credit cards, PayPal, Apple Pay, "
        "Google Pay and Larkspur gift cards. Your payment details are encrypted, and saved "
        "cards can be managed anytime under Account Settings at {{Website URL}}.",
    ]),
    ("INVOICE", "get_invoice", [
        "I need an invoice for order {{Order Number}}",
        "how can I download my invoice",
        "Could you send me a receipt for my last purchase?",
        "where do i find invoices for my orders",
        "Please email me the invoice for order {{Order Number}}.",
        "need an invoice with my company name on it",
    ], [
        "You can download invoices anytime: sign in at {{Website URL}}, open Your Orders, "
        "select the order and choose Download Invoice. A PDF copy is also attached to your "
        "shipping confirmation email. If you need a company name or tax ID added, let us know.",
        "Invoices are created automatically when an order ships. Open Order History, click "
        "the order and select Invoice to view or print it. For a business invoice, add your "
        "company details under Account Settings and the next invoice will include them.",
        "I have sent the invoice for order {{Order Number}} to your account email. It is "
        "invoice {{Invoice Number}}, dated {{Date}}, for a total of {{Order Total}}. You can "
        "also download the same PDF from Your Orders whenever you need it.",
    ]),
    ("INVOICE", "check_invoice", [
        "I have a question about invoice {{Invoice Number}}",
        "the amount on my invoice looks wrong",
        "Can you explain the charges on invoice {{Invoice Number}}?",
        "why is there a charge on my bill I don't recognize",
        "How do I check the details of my invoice?",
    ], [
        "Happy to help you review it. Each invoice lists item prices, shipping, discounts and "
        "taxes on separate lines. Open it from Your Orders at {{Website URL}} to see the "
        "breakdown. If a line still looks wrong, send us the invoice number and we will check.",
        "I understand the concern. Unexpected amounts usually come from shipping fees, taxes "
        "or a promotion that did not apply. Share the invoice number and the line you are "
        "unsure about, and I will explain it or correct it if we made a mistake.",
        "Invoice {{Invoice Number}} was issued on {{Date}} for {{Order Total}}. It includes "
        "the item prices, standard shipping and sales tax, each on its own line. If any "
        "charge looks incorrect, tell me which line and I will review it right away.",
    ]),
    ("ACCOUNT", "create_account", [
        "how do i sign up",
        "I want to open an account",
        "Can you help me create a new account?",
        "how to register on your site",
        "Is creating an account free?",
        "i want to make an account with {{Account Email}}",
    ], [
        "Creating an account is free and quick. Go to {{Website URL}}, select Sign Up, enter "
        "your name, email address and a password, then confirm the link we email you. With an "
        "account you can track orders, save addresses and check out faster.",
        "Welcome! To register, click Create Account at the top of any page, fill in your "
        "details and choose a password of at least eight characters. We will send a "
        "verification email, and once you confirm it your account is ready to use.",
        "Great, let's get you set up. Select Sign Up at {{Website URL}}, enter {{Account "
        "Email}} and choose a password. We will send a confirmation link to that address, and "
        "after you click it you can start shopping and tracking orders.",
    ]),
    ("ACCOUNT", "delete_account", [
        "I want to delete my account",
        "how do I close my account permanently",
        "Please remove all my personal data.",
        "delete my profile, the email is {{Account Email}}",
        "Can you deactivate my account?",
        "i don't want an account anymore",
    ], [
        "I'm sorry to see you go. You can close your account from Account Settings by "
        "selecting Privacy and then Delete Account. Any open orders must be completed first. "
        "Once confirmed, your personal data is erased within 30 days, and this cannot be "
        "undone.",
        "We can do that for you. Deleting your account removes your order history, saved "
        "addresses and payment methods. Go to Account Settings, choose Delete Account and "
        "confirm by email. If you only want fewer emails, you can unsubscribe instead.",
        "I have received your request to delete the account linked to {{Account Email}}. We "
        "will send a confirmation link to that address; once you click it, the account is "
        "closed and your personal data is removed within 30 days.",
    ]),
    ("ACCOUNT", "recover_password", [
        "forgot my password",
        "I can't log in to my account",
        "How do I reset my password?",
        "password reset link not working",
        "i forgot the password for {{Account Email}}",
        "locked out of my account, please help",
    ], [
        "No worries, that happens. On the sign-in page, select Forgot Password, enter your "
        "account email and we will send a reset link that is valid for one hour. Check your "
        "spam folder if it does not arrive within a few minutes.",
        "Let's get you back in. Click Forgot Password on the login page at {{Website URL}} and "
        "follow the link in the email to choose a new password. If you are still locked out, "
        "call us at {{Support Phone}} and we will verify your identity.",
        "I have sent a password reset link to {{Account Email}}. It expires in one hour, so "
        "please use it soon. If you do not see the email within five minutes, check your spam "
        "folder or request a new link from the sign-in page.",
    ]),
    ("ACCOUNT", "edit_account", [
        "how do I change my email address",
        "I need to update my phone number",
        "Can I change the name on my account?",
        "update my account details please",
        "where can i edit my profile",
    ], [
        "You can update your details at any time. Sign in at {{Website URL}}, open Account "
        "Settings and choose Personal Information. Edit your name, email or phone number and "
        "select Save. If you change your email, we will ask you to confirm the new address.",
        "Sure! Go to Your Account, then Profile, and click Edit next to the detail you want to "
        "change. Changes to your email or password require your current password for "
        "security. Your updated details apply to future orders right away.",
    ]),
    ("SUBSCRIPTION", "newsletter_subscription", [
        "how do I sign up for your newsletter",
        "Please unsubscribe me from your emails.",
        "I get too many promotional emails",
        "i want to subscribe to the newsletter with {{Account Email}}",
        "Can I get notified about sales?",
    ], [
        "You can manage newsletters under Account Settings, then Email Preferences. Tick the "
        "newsletter box to receive weekly deals and new arrivals, or untick it to stop them. "
        "Changes take effect within 24 hours, and order emails are always sent.",
        "To stop promotional emails, click Unsubscribe at the bottom of any newsletter, or "
        "switch them off in Email Preferences. If you would rather hear about sales, turn on "
        "Deals and Events there and we will email you before each sale starts.",
        "Done! {{Account Email}} is now subscribed to our weekly newsletter, with new arrivals "
        "and members-only deals. You can change how often we write, or unsubscribe with one "
        "click, from the link at the bottom of every email.",
    ]),
    ("SUBSCRIPTION", "cancel_subscription", [
        "how do i cancel my Larkspur Plus membership",
        "I want to stop my subscription",
        "Please cancel my monthly plan before the next charge.",
        "cancel subscription",
        "Will I get a refund if I cancel my membership?",
    ], [
        "You can cancel Larkspur Plus anytime from Account Settings, then Memberships, by "
        "selecting Cancel Membership. Your benefits stay active until the end of the current "
        "billing period, and you will not be charged again.",
        "Sorry to see you go. Open Memberships in your account and choose Cancel. You keep "
        "free shipping and member prices until the end of your billing period, and no further "
        "charges are made. If you joined less than 14 days ago, we refund the fee.",
        "Of course. Cancelling takes effect at the end of your current month, so you will not "
        "be charged again. Go to Account Settings, select Memberships and confirm the "
        "cancellation. You can rejoin anytime with the same account.",
    ]),
    ("CONTACT", "contact_customer_service", [
        "how can I contact customer service",
        "What's your phone number?",
        "what are your customer service hours",
        "I need to talk to support",
        "Is there an email address I can write to?",
    ], [
        "You can reach our support team by phone at {{Support Phone}} or by email at {{Support "
        "Email}}. Phone lines are open {{Business Hours}}, and we answer emails within one "
        "business day. You can also chat with us from the Help page at {{Website URL}}.",
        "We're here to help! Call {{Support Phone}} ({{Business Hours}}) or write to {{Support "
        "Email}} anytime. For the fastest answer, have your order number ready so our team can "
        "look up your details right away.",
    ]),
    ("CONTACT", "contact_human_agent", [
        "can I speak to a real person",
        "I want to talk to a human agent",
        "transfer me to a live agent please",
        "Is there someone I can talk to directly?",
        "get me a human",
    ], [
        "Of course, I will connect you with one of our agents. Live agents are available "
        "{{Business Hours}}. If you prefer, call {{Support Phone}} directly. Please have your "
        "order number ready so they can help you as quickly as possible.",
        "I understand you would like to talk to a person. I am transferring you to the next "
        "available agent now, and the wait is usually under five minutes. Outside {{Business "
        "Hours}}, you can leave a message and we will call you back.",
    ]),
    ("FEEDBACK", "complaint", [
        "I want to file a complaint",
        "Your service has been terrible and I'm really unhappy.",
        "how do i complain about a delivery driver",
        "Who can I talk to about a bad experience with order {{Order Number}}?",
        "i'm very disappointed with the quality of {{Item}}",
    ], [
        "I'm truly sorry about your experience, and thank you for telling us. Please share "
        "what happened, including the order number if there is one, and I will pass your "
        "complaint to our care team. A specialist will reply within one business day.",
        "I apologize that we let you down. Your feedback matters, and I want to make this "
        "right. You can describe the issue here or write to {{Support Email}}, and a member of "
        "our care team will follow up within 24 hours with a resolution.",
        "I'm sorry to hear about the quality of {{Item}}. Quality issues are covered by our "
        "guarantee, so you can return it for a full refund or a replacement within {{Return "
        "Window}}. I have also shared your feedback with our product team.",
        "I'm sorry about what happened with order {{Order Number}}. I have logged a formal "
        "complaint with the details and escalated it to our customer care lead. You will "
        "receive an email within one business day explaining how we will put things right.",
    ]),
    ("FEEDBACK", "review", [
        "how do I leave a review",
        "I want to share feedback about your service",
        "Where can I rate a product I bought?",
        "can i write a review for {{Item}}",
        "I'd like to post a review of something I ordered.",
    ], [
        "Thank you for wanting to share your thoughts! Open Your Orders, select the item and "
        "choose Write a Review. You can add a star rating, a few words and photos. Reviews "
        "appear on the product page after a quick check, usually within 48 hours.",
        "We love hearing from customers. To rate a product, visit its page at {{Website URL}} "
        "and scroll to Reviews, or use the link in the email we send a week after delivery. "
        "Feedback about our service can be sent to {{Support Email}}.",
        "Thanks for choosing to review {{Item}}! Go to Your Orders, find the purchase and "
        "select Write a Review. Share a rating and what you liked or disliked. Your review "
        "helps other shoppers and our product team.",
    ]),
]

GREETINGS = ["Hi,", "Hello,", "Hey,", "Good morning,", "Good afternoon,", "Hi there,",
             "Hello support,", "Dear support team,"]
FORMAL_CLOSINGS = [" Thank you.", " Thanks in advance.", " Many thanks.", ""]
CASUAL_TAILS = [" pls", " thx", " thanks", " please", "??", "", "", ""]
CASUAL_SWAPS = [("please", "pls"), ("you", "u"), ("I'm", "im"), ("don't", "dont"),
                ("can't", "cant"), ("what's", "whats"), ("hasn't", "hasnt")]
QUESTION_WORDS = {"how", "can", "could", "where", "what", "when", "is", "do", "will", "who",
                  "which", "why", "are", "what's", "does", "has", "should", "would",
                  "may", "if"}
PLACEHOLDER = re.compile(r"\{\{([^{}]+)\}\}")


def placeholders(template: str) -> set[str]:
    return set(PLACEHOLDER.findall(template))


def make_values(rng: random.Random) -> dict[str, str]:
    """Concrete values for every per-row placeholder, drawn in a fixed order."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    city, state, zip3 = rng.choice(CITIES)
    day = _dt.date(2025, 2, 3) + _dt.timedelta(days=rng.randint(0, 300))
    cents = rng.choice(["00", "49", "90", "95", "99", f"{rng.randint(0, 99):02d}"])
    total = rng.randint(12, 260)
    refund = rng.randint(8, total)
    values = {
        "Customer Name": first,
        "Order Number": f"#{rng.choice(ORDER_PREFIXES)}-{rng.randint(10000, 99999)}",
        "Invoice Number": f"INV-2025-{rng.randint(100, 99999):05d}",
        "Item": rng.choice(ITEMS),
        "Account Email": f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@mailbox.example",
        "Shipping Address": (f"{rng.randint(12, 2980)} {rng.choice(STREETS)}, {city}, {state} "
                             f"{zip3}{rng.randint(0, 99):02d}"),
        "City": city,
        "Tracking Number": f"LG{rng.randint(10 ** 9, 10 ** 10 - 1)}US",
        "Carrier": rng.choice(CARRIERS),
        "Delivery Date": f"{WEEKDAYS[day.weekday()]}, {MONTHS[day.month - 1]} {day.day}",
        "Date": f"{MONTHS[day.month - 1]} {day.day}, {day.year}",
        "Order Total": f"${total}.{cents}",
        "Refund Amount": f"${refund}.{cents}",
        "Card Ending": f"{rng.randint(0, 9999):04d}",
    }
    values.update(STORE_FACTS)
    return values


def fill(template: str, values: dict[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def allowed(response: str, instruction: str) -> bool:
    """May this response answer this instruction without inventing customer details?"""
    asked = placeholders(instruction)
    can_look_up = bool(asked & LOOKUP_KEYS)
    for key in placeholders(response):
        if key in asked or key in STORE_FACTS:
            continue
        if key in LOOKED_UP and can_look_up:
            continue
        return False
    return True


def typo(text: str, rng: random.Random) -> str:
    """Misspell one plain word: swap, drop or double a letter."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if w.isalpha() and len(w) >= 5]
    if not candidates:
        return text
    i = rng.choice(candidates)
    w = words[i]
    j = rng.randint(1, len(w) - 3)
    kind = rng.randint(0, 2)
    if kind == 0:
        w = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    elif kind == 1:
        w = w[:j] + w[j + 1:]
    else:
        w = w[:j] + w[j] + w[j:]
    words[i] = w
    return " ".join(words)


def casual(text: str, rng: random.Random) -> str:
    text = text.rstrip(".?!")
    for formal_word, short in CASUAL_SWAPS:
        if rng.random() < 0.5:
            text = re.sub(rf"\b{re.escape(formal_word)}\b", short, text)
            text = re.sub(rf"\b{re.escape(formal_word.capitalize())}\b", short, text)
    text = re.sub(r"\bI\b", "i", text)
    return text[:1].lower() + text[1:] + rng.choice(CASUAL_TAILS)


def formal(text: str, rng: random.Random) -> str:
    body = text[:1].upper() + text[1:]
    if not body.endswith((".", "?", "!")):
        first_word = body.split(" ", 1)[0].lower()
        body += "?" if first_word in QUESTION_WORDS else "."
    if not (body.startswith("I ") or body.startswith("I'")):
        body = body[:1].lower() + body[1:]
    return f"{rng.choice(GREETINGS)} {body}{rng.choice(FORMAL_CLOSINGS)}"


def style(text: str, rng: random.Random) -> str:
    """One of several ways a customer might type the same request."""
    roll = rng.random()
    if roll < 0.34:
        return text
    if roll < 0.56:
        return casual(text, rng)
    if roll < 0.78:
        return formal(text, rng)
    if roll < 0.92:
        return typo(text, rng)
    return typo(casual(text, rng), rng)


def generate(seed: int = SEED, rows_per_intent: int = ROWS_PER_INTENT) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    for category, intent, instructions, responses in INTENTS:
        seen: set[tuple[str, str]] = set()
        made = 0
        attempts = 0
        while made < rows_per_intent:
            attempts += 1
            if attempts > rows_per_intent * 50:
                raise SystemExit(f"{intent}: cannot make {rows_per_intent} distinct rows")
            template = rng.choice(instructions)
            options = [r for r in responses if allowed(r, template)]
            if not options:
                raise SystemExit(f"{intent}: no response fits instruction {template!r}")
            response_template = rng.choice(options)
            values = make_values(rng)
            instruction = style(fill(template, values), rng)
            response = fill(response_template, values)
            if (instruction, response) in seen:
                continue
            seen.add((instruction, response))
            rows.append({"instruction": instruction, "response": response,
                         "category": category, "intent": intent})
            made += 1
    rng.shuffle(rows)
    check(rows)
    return rows


def check(rows: list[dict[str, str]]) -> None:
    """Refuse to write a dataset that breaks the promises in the module docstring."""
    for n, row in enumerate(rows):
        for key in ("instruction", "response"):
            if "{{" in row[key] or "}}" in row[key]:
                raise SystemExit(f"row {n}: unfilled placeholder in {key}: {row[key]!r}")
        words = len(row["response"].split())
        if not MIN_RESPONSE_WORDS <= words <= MAX_RESPONSE_WORDS:
            raise SystemExit(f"row {n} ({row['intent']}): response has {words} words")
        if len(row["instruction"].split()) > MAX_INSTRUCTION_WORDS:
            raise SystemExit(f"row {n} ({row['intent']}): instruction too long")


def write(rows: list[dict[str, str]], path: Path) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("support.jsonl"),
                        help="where to write the JSONL file (default: support.jsonl here)")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    rows = generate(args.seed)
    write(rows, args.out)
    print(f"wrote {len(rows)} rows, {len({r['intent'] for r in rows})} intents to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
